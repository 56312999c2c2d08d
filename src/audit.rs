//! The audit trail: one row per write (API, `passwd`, an import or a sync as a whole), with
//! when, who (the key's name, `cli`, `sync` or `anonymous`), what, which customer and which
//! fields changed. Names only: a password value never reaches it, and neither does any other
//! value. Rows older than `audit_days` are pruned as new ones are written.
//!
//! Login attempts through `POST /CUSTOMER/LOGIN/` are rows too (action `login`), kept apart
//! from the writes when the trail is read ([`Kind`]): the outcome (`ok`, `failed`, `limited`),
//! the customer when the account exists, the key's name and the end user's address when the
//! request makes it known. Never the password, and never the email or login typed for an
//! account that does not exist (it may be a password typed in the wrong field): such a row
//! says `unknown account`.

use std::net::IpAddr;

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
    /// A login attempt (see [`login_detail`]).
    Login,
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
            Action::Login => "login",
        }
    }
}

/// Which rows of the trail to read: the writes (what `clientele audit` always showed), or the
/// login attempts (`--logins`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Writes,
    Logins,
}

impl Kind {
    /// Whether rows of `action` are of this kind.
    pub fn logins(self) -> bool {
        self == Kind::Logins
    }
}

/// What a login attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Right password: a session was opened.
    Ok,
    /// Wrong password, or no such account (401).
    Failed,
    /// Refused before any check: too many failures (429), for `retry_after` seconds more.
    Limited { retry_after: u64 },
}

/// A login row's detail: the outcome first, then what is known of who tried. The customer,
/// when the account exists, goes in the row's customer column; an unknown account is said so,
/// never named. An IPv6 address is the /64 the limits count.
pub fn login_detail(outcome: LoginOutcome, known_account: bool, address: Option<IpAddr>) -> String {
    let mut detail = match outcome {
        LoginOutcome::Ok => "ok".to_owned(),
        LoginOutcome::Failed => "failed".to_owned(),
        LoginOutcome::Limited { retry_after } => format!(
            "limited ({retry_after} s more; further refused attempts in this window are not \
             written)"
        ),
    };
    if !known_account {
        detail.push_str(": unknown account");
    }
    match address {
        Some(IpAddr::V6(v6)) => detail.push_str(&format!(" from {v6}/64")),
        Some(v4) => detail.push_str(&format!(" from {v4}")),
        None => {}
    }
    detail
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_rows_say_the_outcome_and_never_name_an_unknown_account() {
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        let v6: IpAddr = "2001:db8:1:2::".parse().unwrap();
        assert_eq!(
            login_detail(LoginOutcome::Ok, true, Some(v4)),
            "ok from 198.51.100.7"
        );
        assert_eq!(login_detail(LoginOutcome::Failed, true, None), "failed");
        assert_eq!(
            login_detail(LoginOutcome::Failed, false, Some(v6)),
            "failed: unknown account from 2001:db8:1:2::/64"
        );
        assert!(
            login_detail(LoginOutcome::Limited { retry_after: 42 }, true, None)
                .starts_with("limited (42 s more;")
        );
    }
}
