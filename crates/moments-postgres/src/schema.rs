// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        owner_id -> Uuid,
        name -> Text,
        prefix -> Text,
        digest -> Bytea,
        scopes -> Text,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Uuid,
        #[sql_name = "type"]
        type_ -> Text,
        actor_id -> Nullable<Uuid>,
        target_id -> Nullable<Uuid>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
        details -> Jsonb,
    }
}

diesel::table! {
    oauth_identities (provider, subject) {
        provider -> Text,
        subject -> Text,
        user_id -> Uuid,
        email -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
    }
}

diesel::table! {
    password_credentials (user_id) {
        user_id -> Uuid,
        hash -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    posts (id) {
        id -> Uuid,
        author_id -> Uuid,
        content -> Text,
        media_urls -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        upvotes -> Int8,
        downvotes -> Int8,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        session_id -> Uuid,
        digest -> Bytea,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    role_permissions (role_name, permission) {
        role_name -> Text,
        permission -> Text,
    }
}

diesel::table! {
    roles (name) {
        name -> Text,
        description -> Text,
        builtin -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    user_roles (user_id, role_name) {
        user_id -> Uuid,
        role_name -> Text,
        granted_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Text,
        email -> Nullable<Text>,
        email_key -> Nullable<Text>,
        display_name -> Nullable<Text>,
        email_verified -> Bool,
        disabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        authz_changed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    votes (post_id, user_id) {
        post_id -> Uuid,
        user_id -> Uuid,
        value -> Int2,
        voted_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> users (owner_id));
diesel::joinable!(oauth_identities -> users (user_id));
diesel::joinable!(password_credentials -> users (user_id));
diesel::joinable!(posts -> users (author_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(role_permissions -> roles (role_name));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(user_roles -> roles (role_name));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(votes -> posts (post_id));
diesel::joinable!(votes -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    audit_events,
    oauth_identities,
    password_credentials,
    posts,
    refresh_tokens,
    role_permissions,
    roles,
    sessions,
    user_roles,
    users,
    votes,
);
