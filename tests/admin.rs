//! The admin API against the real service (in-process on port 0, over
//! PostgreSQL and over SQLite): the bearer token guards every path under
//! `/v1/admin/`, and without a token the API is off.

mod support;

use aftercare::config::Role;
use aftercare::store::Store;
use reqwest::StatusCode;
use support::app::{self, App};

const TOKEN: &str = "admin-token-for-tests-0123456789";

async fn spawn_admin<S: Store>(store: S, token: Option<&str>) -> App {
    let mut flags = Vec::new();
    if let Some(t) = token {
        flags.extend(["--admin-token", t]);
    }
    app::spawn_with(store, None, &flags, &[Role::Http]).await
}

fn admin_url(app: &App, path: &str) -> String {
    format!("http://{}/v1/admin{path}", app.addr)
}

async fn every_admin_path_wants_the_token<S: Store>(store: S) {
    let app = spawn_admin(store, Some(TOKEN)).await;
    let http = reqwest::Client::new();
    for path in ["", "/", "/deliveries", "/no/such/path"] {
        let url = admin_url(&app, path);
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "GET {url} without a token"
        );
        assert!(r.headers().contains_key("www-authenticate"));
        let r = http
            .delete(&url)
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "DELETE {url}, wrong token"
        );
        // The token, but not as a bearer token.
        let r = http
            .get(&url)
            .header("authorization", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "GET {url}, not Bearer"
        );
    }
    let r = http
        .get(admin_url(&app, "/no/such/path"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.shutdown().await;
}

async fn without_a_token_the_admin_api_is_off<S: Store>(store: S) {
    let app = spawn_admin(store, None).await;
    let r = reqwest::Client::new()
        .get(admin_url(&app, "/deliveries"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("AFTERCARE_ADMIN_TOKEN"),
        "{body}"
    );
    app.shutdown().await;
}

support::on_both_stores!(
    every_admin_path_wants_the_token,
    without_a_token_the_admin_api_is_off,
);

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let args = support::service_args(&["--admin-token", "short"]);
    let err = args.admin_token().unwrap_err().to_string();
    assert!(
        err.contains("AFTERCARE_ADMIN_TOKEN") && err.contains("16"),
        "{err}"
    );
    let args = support::service_args(&["--admin-token", TOKEN]);
    assert_eq!(args.admin_token().unwrap().as_deref(), Some(TOKEN));
}
