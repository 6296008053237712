//! Collecting field errors of a request body into one 422 problem.

use crate::error::ApiError;
use crate::problem::FieldError;

/// Collects field errors from parsing several values.
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<FieldError>);

impl Fields {
    /// Keeps the parsed value, or records why it was refused.
    pub(crate) fn check<T>(
        &mut self,
        field: &str,
        parsed: Result<T, moments_domain::value::InvalidValue>,
    ) -> Option<T> {
        parsed
            .map_err(|e| {
                self.0.push(FieldError {
                    field: field.to_owned(),
                    code: e.code.to_owned(),
                    message: e.message,
                })
            })
            .ok()
    }

    /// Records an empty required field.
    pub(crate) fn required(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.0.push(FieldError {
                field: field.to_owned(),
                code: "required".into(),
                message: "must not be empty".into(),
            });
        }
    }

    /// Records a refusal.
    pub(crate) fn reject(
        &mut self,
        field: impl Into<String>,
        code: &str,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        });
    }

    /// 422 naming every recorded field, or `Ok`.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}
