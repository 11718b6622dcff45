//! A boundary around grammers' sign-in calls, which panic on some replies Telegram can send
//! (`auth.sentCodeSuccess`, `auth.sentCodePaymentRequired`, missing password parameters).
//! A panic there becomes [`ClientError::UnsupportedReply`] instead of unwinding through the
//! application.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::ClientError;

/// Polls `fut`, turning a panic inside it into an error. grammers' client state is shared
/// behind locks that a panic does not leave half-updated in these calls (they fail before or
/// after their session writes), so carrying on after one is sound.
pub(crate) async fn guarded<T>(call: &'static str, fut: impl Future<Output = T>) -> Result<T, ClientError> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        let polled = catch_unwind(AssertUnwindSafe(|| Pin::as_mut(&mut fut).poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(ClientError::UnsupportedReply { call, reply: describe(&payload) })),
        }
    })
    .await
}

fn describe(payload: &Box<dyn Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    if text.contains("should not have logged in yet") {
        "auth.sentCodeSuccess (Telegram signed in without a code)".into()
    } else if text.contains("not implemented") {
        "auth.sentCodePaymentRequired (Telegram asks for payment before sending a code)".into()
    } else if text.is_empty() {
        "a reply grammers cannot handle".into()
    } else {
        format!("a reply grammers cannot handle ({text})")
    }
}
