//! Where the client's token comes from: a fixed string, or a provider the
//! client calls whenever it needs a fresh one (before expiry, and after the
//! edge closed with `token_expired` or `key_revoked`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error from a token provider.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send + 'static>>;

/// Produces fresh tokens: typically a call to the app's own backend, which
/// mints one through the control plane (see [`crate::Publisher::mint_token`]).
///
/// Any `Fn() -> impl Future<Output = Result<String, E>>` closure is a
/// provider:
///
/// ```
/// # fn demo(builder: herald_sdk::ClientBuilder) -> herald_sdk::ClientBuilder {
/// builder.token_provider(|| async {
///     // e.g. ask your backend over HTTP
///     Ok::<_, std::io::Error>("eyJ…".to_owned())
/// })
/// # }
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// Returns a fresh token.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), herald_sdk::BoxError> {
    /// use herald_sdk::TokenProvider;
    /// let provider = || async { Ok::<_, std::io::Error>("eyJ…".to_owned()) };
    /// assert_eq!(provider.token().await?, "eyJ…");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Any error; the client logs it, reports it in the connection state and
    /// tries again with backoff.
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send + 'static>>;
}

impl<F, Fut, E> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn token(&self) -> TokenFuture {
        let fut = self();
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// The client's token source.
#[derive(Clone)]
pub(crate) enum TokenSource {
    Static(String),
    Provider(Arc<dyn TokenProvider>),
}

impl TokenSource {
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self, Self::Provider(_))
    }

    /// A token: the fixed one, or a fresh one from the provider within
    /// `limit`.
    pub(crate) fn fetch(
        &self,
        limit: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'static>> {
        let fut = self.fetch_unbounded();
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(result) => result,
                Err(_) => Err(format!("the token provider gave no token within {limit:?}")),
            }
        })
    }

    fn fetch_unbounded(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'static>> {
        match self {
            Self::Static(token) => {
                let token = token.clone();
                Box::pin(async move { Ok(token) })
            }
            Self::Provider(p) => {
                let fut = p.token();
                Box::pin(async move {
                    match fut.await {
                        Ok(token) if token.is_empty() => Err("the token provider returned an empty token".to_owned()),
                        Ok(token) => Ok(token),
                        Err(e) => Err(e.to_string()),
                    }
                })
            }
        }
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token itself.
        match self {
            Self::Static(_) => f.write_str("TokenSource::Static(…)"),
            Self::Provider(_) => f.write_str("TokenSource::Provider"),
        }
    }
}
