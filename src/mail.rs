//! Password-reset emails, sent by clientele itself when a reset is started with a public key
//! (a browser's "forgot password" form): the token must never reach the browser, so it goes
//! to the customer's mailbox. Over SMTP with `lettre` (rustls, no system OpenSSL).
//!
//! The message is plain text and short, every sentence in one place here so that it can be
//! translated later. Neither the token nor the SMTP password is ever logged.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{Message, SmtpTransport, Transport};

use crate::auth::Secret;
use crate::config::MailSettings;

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// What sends the reset emails: the SMTP relay, the sender, the link to the shop's page.
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
    reset_url: String,
    minutes: u32,
}

impl Mailer {
    /// Checks the settings (the URL and the sender must parse) and prepares the transport;
    /// nothing is sent or connected yet. The error names the setting, never its password.
    pub fn new(settings: &MailSettings, minutes: u32) -> Result<Mailer, String> {
        let transport = SmtpTransport::from_url(&settings.smtp_url)
            .map_err(|_| {
                "smtp_url: expected smtp://HOST:PORT, smtp://USER:PASSWORD@HOST:587?tls=required \
                 or smtps://USER:PASSWORD@HOST"
                    .to_owned()
            })?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = settings.from.parse::<Mailbox>().map_err(|_| {
            format!(
                "smtp_from: {:?} is not an address like \"Shop <noreply@shop.example>\"",
                settings.from
            )
        })?;
        Ok(Mailer {
            transport,
            from,
            reset_url: settings.reset_url.clone(),
            minutes,
        })
    }

    /// Sends the reset link for `token` to `email`, greeting `first_name`. Blocking: run it
    /// off the async workers. The error says what failed, without the token.
    pub fn send_reset(&self, email: &str, first_name: &str, token: &Secret) -> Result<(), String> {
        let to = Mailbox::new(
            (!first_name.is_empty()).then(|| first_name.to_owned()),
            email
                .parse()
                .map_err(|_| "the customer's email cannot receive mail".to_owned())?,
        );
        let link = self.reset_url.replace("{token}", token.expose());
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(text::SUBJECT)
            .header(ContentType::TEXT_PLAIN)
            .body(text::body(first_name, &link, self.minutes))
            .map_err(|e| format!("the message could not be built: {e}"))?;
        self.transport
            .send(&message)
            .map(drop)
            .map_err(|e| crate::logging::mask_secrets(&format!("the SMTP server: {e}")))
    }
}

/// The words of the reset message, in one place.
mod text {
    pub const SUBJECT: &str = "Reset your password";

    pub fn body(first_name: &str, link: &str, minutes: u32) -> String {
        let greeting = match first_name {
            "" => "Hello,".to_owned(),
            name => format!("Hello {name},"),
        };
        format!(
            "{greeting}\n\n\
             Someone (hopefully you) asked to reset the password of your account.\n\
             To choose a new password, open this link within {minutes} minutes:\n\n\
             {link}\n\n\
             If you did not ask for this, ignore this message: your password stays as it is.\n"
        )
    }
}
