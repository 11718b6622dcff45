//! The client's error type.

use std::path::PathBuf;

use grammers_client::client::PasswordToken;
use grammers_mtsender::InvocationError;
use session_core::SessionError;

/// What went wrong in a [`Client`](crate::Client) call.
///
/// It is `Send + Sync + 'static`, so `?` converts it into `Box<dyn Error + Send + Sync>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The session could not be loaded or persisted (locked by another process, corrupt,
    /// unreachable store, I/O). [`SessionError`] tells the kinds apart.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A request to Telegram failed (RPC error, I/O, transport). A session error raised while
    /// grammers was handling the request is reported as [`ClientError::Session`] instead.
    #[error("telegram request failed: {0}")]
    Invocation(InvocationError),
    /// The account has two-step verification: call
    /// [`Client::check_password`](crate::Client::check_password) with this token.
    #[error("two-step verification password required{}", hint(.0))]
    PasswordRequired(Box<PasswordToken>),
    /// The login code was wrong or expired.
    #[error("the login code is invalid or expired")]
    InvalidCode,
    /// The 2FA password was wrong; the token can be used to try again.
    #[error("the two-step verification password is wrong")]
    InvalidPassword(Box<PasswordToken>),
    /// The phone number has no account; sign up with an official app first.
    #[error("this phone number has no Telegram account; sign up with an official app first")]
    SignUpRequired,
    /// The session path needs a backend whose cargo feature is off.
    #[error("session path {path} needs the `{feature}` feature of layer-client, which is not enabled")]
    FeatureDisabled {
        /// The feature to enable.
        feature: &'static str,
        /// The path that asked for it.
        path: PathBuf,
    },
    /// Telegram accepted the login (the user is signed in), but the session could not be
    /// written. The changes stay pending and are retried (watch
    /// [`Client::session_health`](crate::Client::session_health)); until they are written a
    /// restart would not find this login.
    #[error("signed in, but the session could not be saved: {source}")]
    SignedInNotSaved {
        /// The signed-in user.
        user: Box<grammers_client::peer::User>,
        /// Why the session was not written.
        source: SessionError,
    },
    /// Telegram answered a sign-in call with a reply grammers 0.11 cannot handle (it would
    /// panic): an `auth.sentCodeSuccess` (signed in without a code), an
    /// `auth.sentCodePaymentRequired`, or incomplete 2FA parameters.
    #[error("{call}: Telegram sent {reply}, which this client cannot handle")]
    UnsupportedReply {
        /// Our call that got the reply.
        call: &'static str,
        /// What the reply was.
        reply: String,
    },
    /// The configuration is incomplete or invalid.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

fn hint(token: &PasswordToken) -> String {
    match token.hint() {
        Some(h) if !h.is_empty() => format!(" (hint: {h})"),
        _ => String::new(),
    }
}

impl From<InvocationError> for ClientError {
    fn from(e: InvocationError) -> Self {
        match e {
            InvocationError::Session(inner) => ClientError::Session(SessionError::from_boxed(inner, "session")),
            other => ClientError::Invocation(other),
        }
    }
}

impl From<grammers_client::SignInError> for ClientError {
    fn from(e: grammers_client::SignInError) -> Self {
        use grammers_client::SignInError as S;
        match e {
            S::SignUpRequired => ClientError::SignUpRequired,
            S::PasswordRequired(t) => ClientError::PasswordRequired(Box::new(t)),
            S::InvalidCode => ClientError::InvalidCode,
            S::InvalidPassword(t) => ClientError::InvalidPassword(Box::new(t)),
            S::Other(e) => ClientError::from(e),
        }
    }
}

impl ClientError {
    /// True for Telegram's "not authorized" answers (HTTP-like code 401).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Invocation(InvocationError::Rpc(e)) if e.code == 401)
    }

    /// The RPC error name (`"FLOOD_WAIT"`, `"AUTH_KEY_UNREGISTERED"`, ...), when Telegram
    /// answered with one.
    pub fn rpc_name(&self) -> Option<&str> {
        match self {
            ClientError::Invocation(InvocationError::Rpc(e)) => Some(&e.name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_send_sync_and_boxes() {
        fn assert_bounds<T: std::error::Error + Send + Sync + 'static>() {}
        assert_bounds::<ClientError>();
        let boxed: Box<dyn std::error::Error + Send + Sync> = ClientError::InvalidCode.into();
        assert!(boxed.to_string().contains("code"));
    }

    #[test]
    fn session_errors_inside_grammers_come_back_typed() {
        let inner = SessionError::locked("x.session", Some(42));
        let e = ClientError::from(InvocationError::Session(Box::new(inner)));
        assert!(matches!(e, ClientError::Session(SessionError::Locked { pid: Some(42), .. })), "{e:?}");
    }
}
