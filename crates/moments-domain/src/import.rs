//! Importing accounts from another system: every line checked, then all created in one
//! transaction, or none.

use std::collections::HashMap;

use crate::account::AccountService;
use crate::authz::{DEFAULT_ROLE, RoleName};
use crate::error::InfraError;
use crate::ids::UserId;
use crate::ports::CreateUserError;
use crate::user::NewUser;
use crate::value::{DisplayName, Email, PasswordHash, Username};

/// One account to import, as read from a line (raw: the import validates it).
#[derive(Debug, Clone, Default)]
pub struct ImportRecord {
    /// Username (normalised like a registration).
    pub username: String,
    /// E-mail address.
    pub email: String,
    /// A bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2 PHC hash; replaced by argon2id at first login.
    pub password_hash: String,
    /// Roles besides the default `user` role.
    pub roles: Vec<String>,
    /// Display name, 1 to 64 characters after trimming.
    pub display_name: Option<String>,
}

/// A line that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some lines are invalid; every one is listed.
    #[error("{} invalid line(s)", .0.len())]
    Invalid(Vec<LineError>),
    /// An account appeared concurrently that conflicts with the import.
    #[error("an account created meanwhile conflicts with the import: {0}")]
    Conflict(String),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AccountService {
    /// Imports accounts: `lines` pairs each line number with its parsed record, or with why it
    /// could not be parsed. Every line is checked (format, hash, roles, duplicates in the file,
    /// accounts that already exist) before anything is written; then all accounts are created in
    /// one transaction. Returns how many were imported.
    pub async fn import_users(
        &self,
        lines: Vec<(usize, Result<ImportRecord, String>)>,
    ) -> Result<usize, ImportError> {
        let mut errors = Vec::new();
        let mut accepted = Vec::new();
        let mut seen_usernames: HashMap<String, usize> = HashMap::new();
        let mut seen_emails: HashMap<String, usize> = HashMap::new();
        let mut known_roles: HashMap<String, bool> = HashMap::new();
        for (line, record) in lines {
            let mut reject = |reason: String| errors.push(LineError { line, reason });
            let record = match record {
                Ok(record) => record,
                Err(reason) => {
                    reject(reason);
                    continue;
                }
            };
            let mut problems = Vec::new();
            let username = Username::parse(&record.username)
                .map_err(|e| problems.push(format!("username {e}")))
                .ok();
            let email = Email::parse(&record.email)
                .map_err(|e| problems.push(format!("email {e}")))
                .ok();
            let hash = PasswordHash::new(record.password_hash.clone());
            if !self.hasher().recognizes(&hash) {
                problems.push("password_hash is not a bcrypt or argon2 hash".to_owned());
            }
            let display_name = match record.display_name.as_deref().map(DisplayName::parse) {
                None => None,
                Some(Ok(name)) => Some(name.as_str().to_owned()),
                Some(Err(e)) => {
                    problems.push(format!("display_name {e}"));
                    None
                }
            };
            let mut roles =
                vec![RoleName::parse(DEFAULT_ROLE).map_err(|e| InfraError::internal(e.message))?];
            for role in &record.roles {
                match RoleName::parse(role) {
                    Ok(name) => {
                        let exists = match known_roles.get(role) {
                            Some(exists) => *exists,
                            None => {
                                let exists = self.users().find_role(&name).await?.is_some();
                                known_roles.insert(role.clone(), exists);
                                exists
                            }
                        };
                        if !exists {
                            problems.push(format!("role {role:?} does not exist"));
                        } else if !roles.contains(&name) {
                            roles.push(name);
                        }
                    }
                    Err(e) => problems.push(format!("role {role:?} {e}")),
                }
            }
            if let Some(username) = &username {
                if let Some(first) = seen_usernames.insert(username.as_str().to_owned(), line) {
                    problems.push(format!("username {username} repeats line {first}"));
                } else if self
                    .users()
                    .find_user_by_username(username)
                    .await?
                    .is_some()
                {
                    problems.push(format!("username {username} is already taken"));
                }
            }
            if let Some(email) = &email {
                if let Some(first) = seen_emails.insert(email.key().to_owned(), line) {
                    problems.push(format!("email {email} repeats line {first}"));
                } else if self.users().find_user_by_email(email).await?.is_some() {
                    problems.push(format!("email {email} is already registered"));
                }
            }
            match (username, email, problems.is_empty()) {
                (Some(username), Some(email), true) => accepted.push(NewUser {
                    id: UserId::from_uuid(self.new_id()),
                    username,
                    email: Some(email),
                    email_verified: false,
                    display_name,
                    password_hash: Some(hash),
                    roles,
                    created_at: self.now(),
                }),
                _ => reject(problems.join("; ")),
            }
        }
        if !errors.is_empty() {
            return Err(ImportError::Invalid(errors));
        }
        let count = accepted.len();
        match self.users().create_users(accepted).await {
            Ok(_) => Ok(count),
            Err(CreateUserError::Infra(e)) => Err(e.into()),
            Err(other) => Err(ImportError::Conflict(other.to_string())),
        }
    }
}
