//! Roles and `resource:action` permissions.

use std::fmt;

use crate::value::InvalidValue;

fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A permission, `resource:action`, each part a lowercase word (`posts:moderate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(String);

impl Permission {
    /// Checks the `resource:action` shape. Whether the permission exists in the catalogue is a
    /// separate question ([`catalogue`]).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw.split_once(':') {
            Some((resource, action)) if is_word(resource) && is_word(action) && raw.len() <= 64 => {
                Ok(Self(raw.to_owned()))
            }
            _ => Err(InvalidValue::new(
                "invalid_format",
                "must be resource:action in lowercase, for example posts:write",
            )),
        }
    }

    /// The permission as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role name: `[a-z][a-z0-9_-]{1,31}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleName(String);

impl RoleName {
    /// Checks a role name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut chars = raw.chars();
        let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if first_ok && rest_ok && (2..=32).contains(&raw.len()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue::new(
                "invalid_format",
                "must match [a-z][a-z0-9_-]{1,31}",
            ))
        }
    }

    /// The role name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role: a named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role's name.
    pub name: RoleName,
    /// What the role is for.
    pub description: String,
    /// The permissions the role grants, sorted.
    pub permissions: Vec<Permission>,
    /// Built-in roles (`admin`, `moderator`, `user`) cannot be deleted.
    pub builtin: bool,
}

/// Builds roles from stored rows: `(name, description, builtin)` per role and
/// `(role name, permission)` per grant. Sorted by name, permissions sorted; rows that no longer
/// parse (a renamed permission, say) are skipped rather than failing a sign-in.
pub fn assemble_roles(
    roles: Vec<(String, String, bool)>,
    grants: Vec<(String, String)>,
) -> Vec<Role> {
    let mut by_role: std::collections::BTreeMap<String, Vec<Permission>> = Default::default();
    for (role, permission) in grants {
        if let Ok(p) = Permission::parse(&permission) {
            by_role.entry(role).or_default().push(p);
        }
    }
    let mut assembled: Vec<Role> = roles
        .into_iter()
        .filter_map(|(name, description, builtin)| {
            let mut permissions = by_role.remove(&name).unwrap_or_default();
            permissions.sort();
            Some(Role {
                name: RoleName::parse(&name).ok()?,
                description,
                permissions,
                builtin,
            })
        })
        .collect();
    assembled.sort_by(|a, b| a.name.cmp(&b.name));
    assembled
}

/// One entry of the permission catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionInfo {
    /// `resource:action`.
    pub name: &'static str,
    /// What holding it allows.
    pub description: &'static str,
}

const CATALOGUE: &[PermissionInfo] = &[
    PermissionInfo {
        name: "users:read",
        description: "List and search user accounts",
    },
    PermissionInfo {
        name: "users:write",
        description: "Disable and re-enable user accounts",
    },
    PermissionInfo {
        name: "roles:read",
        description: "Read roles and their permissions",
    },
    PermissionInfo {
        name: "roles:write",
        description: "Create, edit and delete custom roles",
    },
    PermissionInfo {
        name: "roles:assign",
        description: "Assign roles to users and remove them",
    },
    PermissionInfo {
        name: "posts:write",
        description: "Create, edit and delete one's own posts",
    },
    PermissionInfo {
        name: "posts:moderate",
        description: "Delete anyone's posts",
    },
    PermissionInfo {
        name: "api_keys:manage",
        description: "Create and revoke API keys",
    },
    PermissionInfo {
        name: "audit:read",
        description: "Read the audit log",
    },
];

/// Every permission Moments knows, with its description.
pub fn catalogue() -> &'static [PermissionInfo] {
    CATALOGUE
}

/// Name of the role every new account gets.
pub const DEFAULT_ROLE: &str = "user";

/// The built-in roles and their permissions, as the stores seed them.
pub fn builtin_roles() -> Vec<Role> {
    let role = |name: &str, description: &str, perms: &[&str]| {
        let mut permissions: Vec<Permission> = perms
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect();
        permissions.sort();
        Role {
            name: RoleName(name.to_owned()),
            description: description.to_owned(),
            permissions,
            builtin: true,
        }
    };
    let all: Vec<&str> = CATALOGUE.iter().map(|p| p.name).collect();
    vec![
        role("admin", "Administrators: every permission", &all),
        role(
            "moderator",
            "Moderators: write posts, moderate posts, read users",
            &["posts:write", "posts:moderate", "users:read"],
        ),
        role(DEFAULT_ROLE, "Every account: write posts", &["posts:write"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_shape() {
        assert!(Permission::parse("posts:write").is_ok());
        assert!(Permission::parse("api_keys:manage").is_ok());
        for bad in [
            "posts",
            "posts:",
            ":write",
            "Posts:write",
            "posts:write:x",
            "1posts:write",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_assembled_from_rows() {
        let roles = vec![
            ("user".into(), "Everyone".into(), true),
            ("editor".into(), "Edits".into(), false),
            ("Bad Name".into(), "skipped".into(), false),
        ];
        let grants = vec![
            ("editor".into(), "posts:write".into()),
            ("editor".into(), "posts:moderate".into()),
            ("editor".into(), "not a permission".into()),
            ("user".into(), "posts:write".into()),
        ];
        let assembled = assemble_roles(roles, grants);
        let names: Vec<&str> = assembled.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["editor", "user"]);
        let editor: Vec<&str> = assembled[0]
            .permissions
            .iter()
            .map(Permission::as_str)
            .collect();
        assert_eq!(editor, ["posts:moderate", "posts:write"]);
        assert!(assembled[1].builtin);
    }

    #[test]
    fn role_name_shape() {
        assert!(RoleName::parse("editor-in_chief2").is_ok());
        for bad in ["a", "Admin", "1abc", "ab cd", &"a".repeat(33)] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalogue_entries_are_valid_and_builtins_use_only_catalogue_permissions() {
        for p in catalogue() {
            assert!(Permission::parse(p.name).is_ok(), "{}", p.name);
        }
        for role in builtin_roles() {
            assert!(!role.permissions.is_empty());
            for p in &role.permissions {
                assert!(catalogue().iter().any(|c| c.name == p.as_str()), "{p}");
            }
        }
        let admin = builtin_roles()
            .into_iter()
            .find(|r| r.name.as_str() == "admin")
            .unwrap();
        assert_eq!(admin.permissions.len(), catalogue().len());
    }
}
