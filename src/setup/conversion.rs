//! The last step of the manifest flow: the temporary code GitHub handed
//! back becomes the App's id, private key and webhook secret
//! (`POST /app-manifests/{code}/conversions`, no authentication).

use std::time::Duration;

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::files::AppCredentialsFromGitHub;

/// The App GitHub created.
pub struct CreatedApp {
    pub name: String,
    pub slug: String,
    pub html_url: String,
    pub credentials: AppCredentialsFromGitHub,
}

/// GitHub's answer. Not `Debug`: it holds secrets until they are moved
/// into `SecretString`s.
#[derive(Deserialize)]
struct Answer {
    id: u64,
    slug: String,
    name: String,
    html_url: String,
    pem: String,
    webhook_secret: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    message: String,
}

/// Exchanges `code` at the API at `api_url`.
pub async fn exchange(api_url: &str, code: &str, timeout: Duration) -> crate::Result<CreatedApp> {
    // GitHub's codes are hex; anything else must not reach a URL path.
    if code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        anyhow::bail!("GitHub sent back a malformed code");
    }
    let crab = octocrab::Octocrab::builder()
        .base_uri(api_url)
        .with_context(|| format!("GitHub API URL {api_url:?}"))?
        .set_connect_timeout(Some(timeout.min(Duration::from_secs(10))))
        .set_read_timeout(Some(timeout))
        .add_header(
            http::header::USER_AGENT,
            format!("task-list-bot/{}", env!("CARGO_PKG_VERSION")),
        )
        .add_header(http::header::ACCEPT, "application/vnd.github+json".into())
        .build()
        .context("building the GitHub client")?;
    let path = format!("/app-manifests/{code}/conversions");
    let request = async {
        let response = crab
            ._post(path.as_str(), None::<&()>)
            .await
            .map_err(|e| anyhow::anyhow!("GitHub did not answer: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading GitHub's answer: {e}"))?
            .to_bytes();
        anyhow::Ok((parts.status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| anyhow::anyhow!("GitHub did not answer within {timeout:?}"))??;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorAnswer>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        if status == http::StatusCode::NOT_FOUND {
            anyhow::bail!(
                "GitHub does not know this code (404 {message}): it was used already or is more than an hour old; register again from the setup page"
            );
        }
        anyhow::bail!("GitHub refused the code: {} {message}", status.as_u16());
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
        // The error names the field and position, never the values.
        anyhow::anyhow!("GitHub's answer is not an App: {e}")
    })?;
    let pem = SecretString::from(answer.pem);
    octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
        .map_err(|_| anyhow::anyhow!("the private key GitHub sent is not an RSA key in PEM"))?;
    let webhook_secret = answer
        .webhook_secret
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .context("GitHub created the App without a webhook secret")?;
    Ok(CreatedApp {
        name: answer.name,
        slug: answer.slug,
        html_url: answer.html_url,
        credentials: AppCredentialsFromGitHub {
            app_id: answer.id,
            pem,
            webhook_secret,
            client_id: answer.client_id,
            client_secret: answer.client_secret.map(SecretString::from),
        },
    })
}
