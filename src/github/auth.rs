//! The App's credentials: one App JWT, signed rarely, and one installation
//! token per installation, minted with it.
//!
//! Signing a JWT is an RSA signature with the App's key: milliseconds of
//! CPU on a small machine, taken from the same two cores that answer
//! webhooks. octocrab signs a fresh JWT for every installation token it
//! mints and for every request made as the App, so a worker starting on a
//! burst of installations would sign once per installation. Here one JWT
//! serves every installation's token and every App request for most of its
//! life ([`JWT_REUSE`]), and the signing runs on a blocking thread, never
//! on a runtime thread.
//!
//! Each credential is handed out as an octocrab client that sends it as its
//! bearer token. A credential found stale is replaced under a lock held
//! across the replacement, so requests that find it stale together replace
//! it once; a request answered 401 drops the client it used (not a newer
//! one) and tries once more with a fresh credential, as octocrab does for
//! installation tokens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use octocrab::Octocrab;
use octocrab::jsonwebtoken::EncodingKey;
use serde::Deserialize;

use super::bytes_body::collect;
use super::{Answer, InstallationId};

/// How long one App JWT is used. octocrab's JWTs claim to be issued a
/// minute ago (for clock drift) and expire nine minutes from now; GitHub
/// refuses any that lives longer than ten. The last minute is left unused,
/// so that a request signed with it cannot reach GitHub expired.
pub const JWT_REUSE: Duration = Duration::from_secs(8 * 60);

/// How long before its expiry an installation token is replaced. GitHub's
/// tokens live an hour; a request sent with a token that expires while it
/// waits on a rate limit or a retry would get 401.
pub const TOKEN_RENEWAL_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Why no credential could be had.
pub(super) enum AuthFailure {
    /// GitHub answered the request for an installation token, at `path`,
    /// with an error.
    Refused { path: String, answer: Answer },
    /// No answer, or none that could be read.
    Failed(String),
}

/// A client carrying one credential, and until when it is used.
struct Current {
    client: Arc<Octocrab>,
    replace_at: Instant,
}

/// A credential slot: the client in use, if any, replaced under its lock.
#[derive(Default)]
struct Slot(tokio::sync::Mutex<Option<Current>>);

impl Slot {
    /// The current client, or the one `make` returns (kept until the
    /// `Instant` it returns with).
    async fn get_or_replace<F, Fut>(&self, make: F) -> Result<Arc<Octocrab>, AuthFailure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Octocrab, Instant), AuthFailure>>,
    {
        let mut current = self.0.lock().await;
        if let Some(current) = current
            .as_ref()
            .filter(|current| Instant::now() < current.replace_at)
        {
            return Ok(Arc::clone(&current.client));
        }
        let (client, replace_at) = make().await?;
        let client = Arc::new(client);
        *current = Some(Current {
            client: Arc::clone(&client),
            replace_at,
        });
        Ok(client)
    }

    /// Drops `used` if it is still the current client: the next request
    /// gets a fresh credential. A newer client, made meanwhile by another
    /// request, is kept.
    async fn drop_if_current(&self, used: &Arc<Octocrab>) {
        let mut current = self.0.lock().await;
        if current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(&current.client, used))
        {
            *current = None;
        }
    }
}

/// The App's JWT, shared by all of a worker's requests made as the App.
pub(super) struct AppJwt {
    app_id: octocrab::models::AppId,
    key: Arc<EncodingKey>,
    /// A client without credentials, for the JWT's to be added to.
    bare: Octocrab,
    reuse: Duration,
    slot: Slot,
    #[cfg(test)]
    signed: std::sync::atomic::AtomicUsize,
}

impl AppJwt {
    pub(super) fn new(app_id: u64, key: EncodingKey, bare: Octocrab) -> AppJwt {
        AppJwt::reused_for(app_id, key, bare, JWT_REUSE)
    }

    fn reused_for(app_id: u64, key: EncodingKey, bare: Octocrab, reuse: Duration) -> AppJwt {
        AppJwt {
            app_id: octocrab::models::AppId(app_id),
            key: Arc::new(key),
            bare,
            reuse,
            slot: Slot::default(),
            #[cfg(test)]
            signed: Default::default(),
        }
    }

    pub(super) fn app_id(&self) -> u64 {
        self.app_id.0
    }

    /// A client authenticated as the App.
    pub(super) async fn client(&self) -> Result<Arc<Octocrab>, AuthFailure> {
        self.slot
            .get_or_replace(|| async {
                let signed_at = Instant::now();
                let (app_id, key) = (self.app_id, Arc::clone(&self.key));
                let jwt =
                    tokio::task::spawn_blocking(move || octocrab::auth::create_jwt(app_id, &key))
                        .await
                        .map_err(|joined| {
                            AuthFailure::Failed(format!("signing the App JWT: {joined}"))
                        })?
                        .map_err(|e| AuthFailure::Failed(format!("signing the App JWT: {e}")))?;
                #[cfg(test)]
                self.signed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let client = self
                    .bare
                    .user_access_token(jwt)
                    .map_err(|e| AuthFailure::Failed(format!("App client: {e}")))?;
                Ok((client, signed_at + self.reuse))
            })
            .await
    }

    /// GitHub refused `used`: sign a new JWT for the next request.
    pub(super) async fn refused(&self, used: &Arc<Octocrab>) {
        self.slot.drop_if_current(used).await;
    }
}

/// GitHub's answer to `POST /app/installations/{id}/access_tokens`, the
/// fields used. No `Debug`: it holds the token.
#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// One installation's token.
pub(super) struct InstallationToken {
    installation: InstallationId,
    app: Arc<AppJwt>,
    slot: Slot,
}

impl InstallationToken {
    pub(super) fn new(installation: InstallationId, app: Arc<AppJwt>) -> InstallationToken {
        InstallationToken {
            installation,
            app,
            slot: Slot::default(),
        }
    }

    /// A client authenticated as the installation.
    pub(super) async fn client(&self) -> Result<Arc<Octocrab>, AuthFailure> {
        self.slot.get_or_replace(|| self.mint()).await
    }

    /// GitHub refused `used` (401): mint a new token for the next request.
    pub(super) async fn refused(&self, used: &Arc<Octocrab>) {
        self.slot.drop_if_current(used).await;
    }

    /// Asks GitHub for a new token, with the App's JWT.
    async fn mint(&self) -> Result<(Octocrab, Instant), AuthFailure> {
        let app = self.app.client().await?;
        let path = token_path(self.installation);
        let asked_at = Instant::now();
        let response = app
            ._post(&path, Some(&serde_json::json!({})))
            .await
            .map_err(|e| AuthFailure::Failed(super::describe_octocrab_error(e)))?;
        let (parts, body) = response.into_parts();
        let body = collect(body)
            .await
            .map_err(|e| AuthFailure::Failed(format!("reading the token answer: {e}")))?;
        if !parts.status.is_success() {
            if parts.status == StatusCode::UNAUTHORIZED {
                self.app.refused(&app).await;
            }
            return Err(AuthFailure::Refused {
                path,
                answer: Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                },
            });
        }
        let answer: AccessToken = serde_json::from_slice(&body).map_err(|e| {
            AuthFailure::Failed(format!(
                "the installation token answer is not GitHub's: {e}"
            ))
        })?;
        let lifetime = (answer.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        let client = app
            .user_access_token(answer.token)
            .map_err(|e| AuthFailure::Failed(format!("installation client: {e}")))?;
        Ok((client, asked_at + renewal_after(lifetime)))
    }
}

/// Where an installation's tokens are minted.
fn token_path(installation: InstallationId) -> String {
    format!("{TOKEN_PATH_PREFIX}{installation}/access_tokens")
}

const TOKEN_PATH_PREFIX: &str = "/app/installations/";

/// Whether a request to `method path` asked for an installation token.
pub(super) fn mints_a_token(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && path
            .strip_prefix(TOKEN_PATH_PREFIX)
            .is_some_and(|rest| rest.ends_with("/access_tokens"))
}

/// How long a token that lives `lifetime` is used: until
/// [`TOKEN_RENEWAL_MARGIN`] before it expires. One that lives less is used
/// by one request only.
fn renewal_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(TOKEN_RENEWAL_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> Octocrab {
        Octocrab::builder()
            .base_uri("http://127.0.0.1:9")
            .unwrap()
            .build()
            .unwrap()
    }

    fn key() -> EncodingKey {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/test-app-key.pem"
        ))
        .unwrap();
        EncodingKey::from_rsa_pem(&pem).unwrap()
    }

    fn signed(jwt: &AppJwt) -> usize {
        jwt.signed.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn one_jwt_serves_every_request_while_it_is_reused() {
        let jwt = AppJwt::new(1, key(), bare());
        let first = jwt.client().await.ok().unwrap();
        let (a, b) = tokio::join!(jwt.client(), jwt.client());
        assert!(Arc::ptr_eq(&first, &a.ok().unwrap()));
        assert!(Arc::ptr_eq(&first, &b.ok().unwrap()));
        assert_eq!(signed(&jwt), 1, "signed once for three requests");
    }

    #[tokio::test]
    async fn a_jwt_past_its_reuse_is_signed_anew() {
        let jwt = AppJwt::reused_for(1, key(), bare(), Duration::ZERO);
        let first = jwt.client().await.ok().unwrap();
        let later = jwt.client().await.ok().unwrap();
        assert!(!Arc::ptr_eq(&first, &later));
        assert_eq!(signed(&jwt), 2);
    }

    #[tokio::test]
    async fn a_refused_jwt_is_signed_again_but_a_newer_one_is_kept() {
        let jwt = AppJwt::new(1, key(), bare());
        let refused = jwt.client().await.ok().unwrap();
        jwt.refused(&refused).await;
        let fresh = jwt.client().await.ok().unwrap();
        assert!(!Arc::ptr_eq(&refused, &fresh));
        assert_eq!(signed(&jwt), 2);

        // A second request refused with the old JWT does not throw away
        // the one signed since.
        jwt.refused(&refused).await;
        let kept = jwt.client().await.ok().unwrap();
        assert!(Arc::ptr_eq(&fresh, &kept));
        assert_eq!(signed(&jwt), 2);
    }

    #[test]
    fn a_token_is_renewed_five_minutes_before_it_expires() {
        assert_eq!(
            renewal_after(Duration::from_secs(3600)),
            Duration::from_secs(55 * 60)
        );
        assert_eq!(renewal_after(Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn only_the_token_request_is_known_as_one() {
        let path = token_path(InstallationId(7));
        assert_eq!(path, "/app/installations/7/access_tokens");
        assert!(mints_a_token(&Method::POST, &path));
        assert!(!mints_a_token(&Method::GET, &path));
        assert!(!mints_a_token(&Method::POST, "/app/installations/7"));
        assert!(!mints_a_token(&Method::POST, "/repos/octo/app/check-runs"));
    }
}
