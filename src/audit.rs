//! The audit trail: one row per write (API, `passwd`, an import or a sync as a whole), with
//! when, who (the key's name, `cli`, `sync` or `anonymous`), what, which customer and which
//! fields changed. Names only: a password value never reaches it, and neither does any other
//! value. Rows older than `audit_days` are pruned as new ones are written.

/// Who wrote from the command line.
pub const CLI: &str = "cli";

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Update,
    Delete,
    /// The customer changed their own password (proving the current one).
    Password,
    /// An owner set a password (write key or `clientele passwd`), or a reset token did.
    PasswordReset,
    /// A password reset was started: a one-time token was made (never recorded).
    PasswordResetRequest,
    Import,
    Sync,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Password => "password",
            Action::PasswordReset => "password-reset",
            Action::PasswordResetRequest => "password-reset-request",
            Action::Import => "import",
            Action::Sync => "sync",
        }
    }
}

/// One row of the trail, as `clientele audit` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub customer: Option<i64>,
    pub fields: String,
    pub detail: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}  {}  {}", self.at, self.actor, self.action)?;
        if let Some(customer) = self.customer {
            write!(f, "  customer {customer}")?;
        }
        if !self.fields.is_empty() {
            write!(f, "  fields: {}", self.fields)?;
        }
        if !self.detail.is_empty() {
            write!(f, "  {}", self.detail)?;
        }
        Ok(())
    }
}
