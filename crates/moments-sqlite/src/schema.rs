// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Text,
        owner_id -> Text,
        name -> Text,
        prefix -> Text,
        digest -> Binary,
        scopes -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        actor_id -> Nullable<Text>,
        target_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamp,
        details -> Text,
    }
}

diesel::table! {
    oauth_identities (provider, subject) {
        provider -> Text,
        subject -> Text,
        user_id -> Text,
        email -> Nullable<Text>,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
    }
}

diesel::table! {
    password_credentials (user_id) {
        user_id -> Text,
        hash -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    posts (id) {
        id -> Text,
        author_id -> Text,
        content -> Text,
        media_urls -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        upvotes -> BigInt,
        downvotes -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        session_id -> Text,
        digest -> Binary,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        rotated_at -> Nullable<Timestamp>,
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
        created_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    user_roles (user_id, role_name) {
        user_id -> Text,
        role_name -> Text,
        granted_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        email_key -> Nullable<Text>,
        display_name -> Nullable<Text>,
        email_verified -> Bool,
        disabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        authz_changed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    votes (post_id, user_id) {
        post_id -> Text,
        user_id -> Text,
        value -> SmallInt,
        voted_at -> Timestamp,
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
