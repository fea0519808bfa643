//! The control plane's router, without a server (`Router` + `oneshot`): every route of the
//! OpenAPI document × every role (admin, viewer, agent, anonymous) gets the status its
//! `x-roles` promise; and what the routes do with secrets, sessions, tokens and policies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ironhost::api::{AppState, router, ws};
use ironhost::core::live::LiveChain;
use ironhost::core::plane::{Plane, PlaneError};
use ironhost::core::revisions::BundleRun;
use ironhost::events::EventBus;
use ironhost::model::tokens::ModelTokenMeter;
use ironhost::policy::admission::admit_bundle;
use ironhost::policy::defaults::{builtin, default_bundle};
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::store::queries::NewAgent;
use serde_json::{Value, json};
use tower::ServiceExt;

const MASTER_KEY: &str = "test-master-key-0123456789";
const ADMIN_PASSWORD: &str = "admin-password-1";
const AGENT_ID: &str = "lg-00000001";
const CALL_ID: &str = "lg-00000001-llm1";
const ROLES: [&str; 4] = ["admin", "viewer", "agent", "anonymous"];

fn vars(master: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("IRONHOST_MASTER_KEY".to_owned(), master.to_owned()),
        (
            "IRONHOST_ADMIN_PASSWORD".to_owned(),
            ADMIN_PASSWORD.to_owned(),
        ),
    ])
}

struct Fixture {
    dir: tempfile::TempDir,
    app: Router,
    plane: Plane,
    /// Access tokens by role.
    tokens: BTreeMap<&'static str, String>,
    passwords: BTreeMap<&'static str, String>,
    counter: AtomicU32,
}

impl Fixture {
    fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).expect("request")).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.expect("router answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// `POST /api/policies` as admin.
    async fn upload(
        &self,
        file: &str,
        bytes: &[u8],
        settings: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = multipart(file, bytes, settings);
        let auth = format!("Bearer {}", self.tokens["admin"]);
        req.headers_mut()
            .insert("authorization", auth.parse().expect("header"));
        self.send(req).await
    }

    async fn as_role(
        &self,
        role: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.tokens.get(role).cloned();
        self.call(method, path, token.as_deref(), body).await
    }

    /// `POST /api/auth/refresh` with `refresh_token`.
    async fn refresh(&self, refresh_token: impl serde::Serialize) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({ "refresh_token": refresh_token })),
        )
        .await
    }

    async fn login(&self, role: &str) -> Value {
        let (username, password) = if role == "admin" {
            ("admin".to_owned(), ADMIN_PASSWORD.to_owned())
        } else {
            (format!("{role}-user"), self.passwords[role].clone())
        };
        let (status, body) = self
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login as {role}: {body}");
        body
    }
}

/// The message of an error body.
fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

fn multipart(file_name: &str, bytes: &[u8], settings: Option<&str>) -> Request<Body> {
    let boundary = "ironhost-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"{file_name}\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
    if let Some(s) = settings {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"settings\"\r\n\r\n{s}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::builder()
        .method("POST")
        .uri("/api/policies")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .expect("request")
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::open(dir.path(), &vars(MASTER_KEY))
        .await
        .expect("plane opens");
    let engine = PolicyEngine::new(
        EngineOptions::default(),
        plane.services(Arc::new(ModelTokenMeter::embedded())),
    )
    .expect("engine");
    let bundle = default_bundle().expect("default bundle");
    let chain = tokio::task::block_in_place(|| admit_bundle(&engine, &bundle)).expect("admitted");
    let run = BundleRun::unrecorded(&chain, dir.path().join("components"));
    let mut live = LiveChain::new(Arc::new(chain), engine, EventBus::new(), run);
    live.agent_id = Some(AGENT_ID.to_owned());
    let app = router(AppState::new(&plane, Some(live), ws::feed()));
    plane
        .store
        .register_agent(&NewAgent {
            id: AGENT_ID,
            name: "lead_gen",
            script: "lead_gen.py",
            bundle: "default",
            environment: "dev",
            budget_usd: Some(50.0),
            pid: 1,
            pid_start: None,
            runner: ironhost::store::queries::RUNNER_IRONHOST,
        })
        .await
        .expect("agent");
    sqlx::query("UPDATE agents SET state = 'completed'")
        .execute(plane.store.pool())
        .await
        .expect("state");
    sqlx::query(
        "INSERT INTO calls (id, agent_id, kind, provider, model, outcome, latency_ms, verdicts, ts_ms, cost_usd, input_tokens, output_tokens)
         VALUES (?, ?, 'llm', 'openai', 'gpt-4o-mini', 'ok', 12.5, ?, 1, 0.25, 100, 50)",
    )
    .bind(CALL_ID)
    .bind(AGENT_ID)
    .bind(json!([{"policy": "budget", "hook": "on-llm-request", "verdict": "pass", "enforced": true, "latency_us": 7}]).to_string())
    .execute(plane.store.pool())
    .await
    .expect("call");
    let mut fx = Fixture {
        dir,
        app,
        plane,
        tokens: BTreeMap::new(),
        passwords: BTreeMap::new(),
        counter: AtomicU32::new(0),
    };
    let admin = fx.login("admin").await;
    fx.tokens.insert(
        "admin",
        admin["access_token"].as_str().expect("token").to_owned(),
    );
    for role in ["viewer", "agent"] {
        let password = format!("{role}-password-1");
        let (status, body) = fx
            .as_role(
                "admin",
                "POST",
                "/api/users",
                Some(
                    json!({"username": format!("{role}-user"), "password": password, "role": role}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        fx.passwords.insert(role, password);
        let tokens = fx.login(role).await;
        fx.tokens.insert(
            role,
            tokens["access_token"].as_str().expect("token").to_owned(),
        );
    }
    fx
}

/// The OpenAPI document's operations: (method, path template) → roles.
fn documented() -> BTreeMap<(String, String), BTreeSet<String>> {
    let doc: Value = serde_json::from_str(ironhost::api::OPENAPI).expect("openapi.json is JSON");
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let roles = op["x-roles"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} has no x-roles"))
                .iter()
                .map(|r| r.as_str().expect("role").to_owned())
                .collect();
            ops.insert((method.to_uppercase(), path.clone()), roles);
        }
    }
    ops
}

/// The status an allowed caller gets from our request to this operation.
fn success(method: &str, template: &str) -> StatusCode {
    match (method, template) {
        ("POST", "/api/users" | "/api/tokens" | "/api/limits") => StatusCode::CREATED,
        ("PUT", "/api/secrets/{name}") => StatusCode::CREATED,
        ("DELETE", "/api/users/{id}/sessions") => StatusCode::OK,
        ("DELETE", _) | ("POST", "/api/auth/logout") => StatusCode::NO_CONTENT,
        // The agent exists but has completed: allowed, and refused as a conflict.
        ("POST", "/api/agents/{id}/stop") => StatusCode::CONFLICT,
        ("POST", "/api/agents") => StatusCode::ACCEPTED,
        // Not a WebSocket handshake: past the role check, then refused by the upgrade.
        ("GET", "/ws") => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// A request for one operation, with whatever it needs set up first.
async fn request(fx: &Fixture, method: &str, template: &str) -> Request<Body> {
    let n = fx.next();
    let json_req = |path: String, body: Option<Value>| {
        let mut r = Request::builder().method(method).uri(path);
        let body = match body {
            Some(v) => {
                r = r.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        r.body(body).expect("request")
    };
    let secret = |name: String| async move {
        fx.plane
            .secrets
            .put(
                &name,
                "dev",
                "sk-proj-abcdefghijklmnopqrstuvwxyz",
                &ironhost::secrets::Actor::host(),
            )
            .await
            .expect("secret");
        name
    };
    match (method, template) {
        ("POST", "/api/auth/login") => json_req(
            template.to_owned(),
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        ),
        ("POST", "/api/auth/refresh") => {
            let tokens = fx.login("admin").await;
            json_req(
                template.to_owned(),
                Some(json!({"refresh_token": tokens["refresh_token"]})),
            )
        }
        ("POST", "/api/users") => json_req(
            template.to_owned(),
            Some(
                json!({"username": format!("user{n}"), "password": "password-123", "role": "viewer"}),
            ),
        ),
        ("PATCH" | "DELETE", "/api/users/{id}") | ("DELETE", "/api/users/{id}/sessions") => {
            let id = fx
                .plane
                .store
                .create_user(&format!("member{n}"), "not-a-real-hash", "viewer")
                .await
                .expect("user")
                .expect("new user")
                .id;
            let body = (method == "PATCH").then(|| json!({"role": "agent"}));
            json_req(template.replace("{id}", &id.to_string()), body)
        }
        ("POST", "/api/tokens") => json_req(
            template.to_owned(),
            Some(json!({"name": format!("t{n}"), "role": "agent"})),
        ),
        ("DELETE", "/api/tokens/{id}") => {
            let id = fx
                .plane
                .store
                .create_token(&format!("t{n}"), &format!("{n:064}"), "agent", "test")
                .await
                .expect("token")
                .id;
            json_req(format!("/api/tokens/{id}"), None)
        }
        ("POST", "/api/policies") => multipart(
            "budget.wasm",
            builtin("budget").expect("budget component"),
            None,
        ),
        ("PUT", "/api/policies/order") => json_req(
            template.to_owned(),
            Some(
                json!({"order": ["secrets-inject", "circuit-breaker", "budget", "prompt-guard", "pii-redact"]}),
            ),
        ),
        ("PUT", "/api/secrets/{name}") => json_req(
            format!("/api/secrets/new-{n}"),
            Some(json!({"value": "sk-proj-zyxwvutsrqponmlkjihgfedcba", "environment": "dev"})),
        ),
        ("GET", "/api/secrets/{name}") => json_req(
            format!(
                "/api/secrets/{}?environment=dev",
                secret(format!("s{n}")).await
            ),
            None,
        ),
        ("DELETE", "/api/secrets/{name}") => json_req(
            format!(
                "/api/secrets/{}?environment=dev",
                secret(format!("s{n}")).await
            ),
            None,
        ),
        ("POST", "/api/secrets/{name}/reveal") => json_req(
            format!(
                "/api/secrets/{}/reveal?environment=dev",
                secret(format!("s{n}")).await
            ),
            None,
        ),
        ("POST", "/api/limits") => json_req(
            template.to_owned(),
            Some(json!({"agent_id": format!("ag-{n}"), "limit_usd": 10.0})),
        ),
        ("GET" | "PUT" | "DELETE", "/api/limits/{id}") => {
            let limit = fx
                .plane
                .store
                .create_limit(Some(&format!("ag-{n}")), 5.0, 0.9)
                .await
                .expect("limit")
                .expect("new scope");
            let body = (method == "PUT").then(|| json!({"limit_usd": 7.5}));
            json_req(format!("/api/limits/{}", limit.id), body)
        }
        _ => {
            let path = template
                .replace(
                    "{id}",
                    if template.contains("traces") {
                        CALL_ID
                    } else {
                        AGENT_ID
                    },
                )
                .replace(
                    "{name}",
                    if template.contains("policies") {
                        "pii-redact"
                    } else {
                        "gpt-4o-mini"
                    },
                );
            json_req(path, None)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_exactly_its_roles() {
    let fx = fixture().await;
    let ops = documented();
    assert!(
        ops.len() >= 42,
        "the document lists {} operations",
        ops.len()
    );
    let mut failures = Vec::new();
    for ((method, template), roles) in &ops {
        for role in ROLES {
            // Logging out ends the session: use a fresh one so the other rows keep theirs.
            let token = if template == "/api/auth/logout" && role != "anonymous" {
                let body = if role == "admin" {
                    fx.login("admin").await
                } else {
                    fx.login(role).await
                };
                Some(body["access_token"].as_str().expect("token").to_owned())
            } else {
                fx.tokens.get(role).cloned()
            };
            let mut req = request(&fx, method, template).await;
            if let Some(t) = &token {
                req.headers_mut().insert(
                    "authorization",
                    format!("Bearer {t}").parse().expect("header"),
                );
            }
            let (status, body) = fx.send(req).await;
            let expected = if roles.contains(role) {
                success(method, template)
            } else if role == "anonymous" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            if status != expected {
                failures.push(format!(
                    "{method} {template} as {role}: {status}, expected {expected}: {body}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Unknown routes are JSON 404s, for everyone.
    let (status, body) = fx.as_role("admin", "GET", "/api/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_for_viewers_full_for_agents_revealed_for_admins_and_never_stored_in_clear()
 {
    let fx = fixture().await;
    let value = "sk-proj-Q7vXtL2mN9pR4sKw8yZ3";
    let (status, body) = fx
        .as_role(
            "admin",
            "PUT",
            "/api/secrets/OPENAI_API_KEY",
            Some(json!({"value": value, "environment": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["value"], "sk-proj-Q7...Z3");
    // A value no environment variable can hold is refused, naming the secret and the reason.
    let (status, body) = fx
        .as_role(
            "admin",
            "PUT",
            "/api/secrets/NUL_KEY",
            Some(json!({"value": "abc\0def", "environment": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        message(&body).contains("NUL_KEY") && message(&body).contains("NUL byte"),
        "{body}"
    );

    let path = "/api/secrets/OPENAI_API_KEY?environment=production";
    let (_, viewer) = fx.as_role("viewer", "GET", path, None).await;
    assert_eq!(
        (viewer["value"].as_str(), viewer["masked"].as_bool()),
        (Some("sk-proj-Q7...Z3"), Some(true))
    );
    let (_, admin) = fx.as_role("admin", "GET", path, None).await;
    assert_eq!(admin["masked"], true);
    let (_, agent) = fx.as_role("agent", "GET", path, None).await;
    assert_eq!(
        (agent["value"].as_str(), agent["masked"].as_bool()),
        (Some(value), Some(false))
    );
    let (status, revealed) = fx
        .as_role(
            "admin",
            "POST",
            "/api/secrets/OPENAI_API_KEY/reveal?environment=production",
            None,
        )
        .await;
    assert_eq!(
        (status, revealed["value"].as_str()),
        (StatusCode::OK, Some(value))
    );
    let (status, _) = fx
        .as_role(
            "viewer",
            "POST",
            "/api/secrets/OPENAI_API_KEY/reveal?environment=production",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Rotation, then soft delete; the audit log has every step and no value.
    let (status, _) = fx
        .as_role(
            "admin",
            "PUT",
            "/api/secrets/OPENAI_API_KEY",
            Some(json!({"value": "sk-proj-rotated-value-0001", "environment": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = fx.as_role("admin", "DELETE", path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = fx.as_role("agent", "GET", path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log) = fx
        .as_role(
            "viewer",
            "GET",
            "/api/secrets/audit?secret_name=OPENAI_API_KEY",
            None,
        )
        .await;
    let actions: Vec<&str> = log
        .as_array()
        .expect("log")
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        ["create", "read", "reveal", "update", "delete"],
        "{log}"
    );
    let actors: BTreeSet<&str> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or(""))
        .collect();
    assert!(
        actors.contains("admin") && actors.contains("agent-user"),
        "{actors:?}"
    );

    // Nothing a viewer can read holds the value, nor any error message.
    let mut seen = String::new();
    for p in [
        "/api/secrets",
        "/api/secrets/audit",
        "/api/events",
        "/api/agents",
        "/api/policies",
    ] {
        seen.push_str(&fx.as_role("viewer", "GET", p, None).await.1.to_string());
    }
    let (_, bad) = fx
        .as_role(
            "admin",
            "PUT",
            "/api/secrets/bad%20name",
            Some(json!({"value": value})),
        )
        .await;
    seen.push_str(&bad.to_string());
    assert!(message(&bad).contains("secret name"), "{bad}");
    assert!(
        !seen.contains("Q7vXtL2mN9pR4sKw8yZ3") && !seen.contains("rotated-value"),
        "{seen}"
    );

    // The database file holds ciphertext only.
    fx.plane.store.pool().close().await;
    let mut raw = Vec::new();
    for f in ["ironhost.db", "ironhost.db-wal"] {
        raw.extend(std::fs::read(fx.dir.path().join(f)).unwrap_or_default());
    }
    assert!(raw.len() > 4096);
    for needle in [
        value.as_bytes(),
        b"rotated-value".as_slice(),
        b"Q7vXtL2m".as_slice(),
    ] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "plaintext {} in the database file",
            String::from_utf8_lossy(needle)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_is_refused_clearly_and_the_right_one_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let plane = Plane::open(dir.path(), &vars(MASTER_KEY))
            .await
            .expect("first open");
        plane
            .secrets
            .put(
                "db-password",
                "staging",
                "correct-horse-battery",
                &ironhost::secrets::Actor::host(),
            )
            .await
            .expect("put");
        plane.store.pool().close().await;
    }
    let err = Plane::open(dir.path(), &vars("another-master-key-9876"))
        .await
        .expect_err("wrong key");
    let message = err.to_string();
    assert!(matches!(err, PlaneError::Input(_)), "{message}");
    assert!(message.contains("master key does not match"), "{message}");
    assert!(message.contains("ironhost.db"), "{message}");
    assert!(!message.contains("correct-horse"), "{message}");
    let short = Plane::open(dir.path(), &vars("short"))
        .await
        .expect_err("short key")
        .to_string();
    assert!(
        short.contains("IRONHOST_MASTER_KEY") && short.contains("at least 16"),
        "{short}"
    );

    let plane = Plane::open(dir.path(), &vars(MASTER_KEY))
        .await
        .expect("right key");
    assert_eq!(
        &*plane
            .secrets
            .value("staging", "db-password")
            .expect("value"),
        "correct-horse-battery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_session_and_api_tokens_are_kept_as_digests() {
    let fx = fixture().await;
    let session = fx.login("viewer").await;
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(
        fx.call("GET", "/api/auth/me", Some(&access), None).await.0,
        StatusCode::OK
    );
    // A refresh token is not an access token.
    assert_eq!(
        fx.call("GET", "/api/auth/me", Some(&refresh), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, renewed) = fx.refresh(&refresh).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let renewed_access = renewed["access_token"].as_str().expect("access").to_owned();
    assert_eq!(
        fx.call("POST", "/api/auth/logout", Some(&access), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    for token in [&access, &renewed_access] {
        let (status, body) = fx.call("GET", "/api/auth/me", Some(token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, _) = fx.refresh(&refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = fx
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "viewer-user", "password": "nope-nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // API tokens: shown once, stored as SHA-256, usable with their role, revocable.
    let (status, created) = fx
        .as_role(
            "admin",
            "POST",
            "/api/tokens",
            Some(json!({"name": "ci", "role": "agent"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("ih_") && token.len() == 67, "{token}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_sha256 FROM api_tokens")
        .fetch_all(fx.plane.store.pool())
        .await
        .expect("tokens");
    assert!(stored.contains(&ironhost::auth::token_digest(&token)));
    assert!(stored.iter().all(|s| !s.contains(&token[3..])));
    let (_, listed) = fx.as_role("admin", "GET", "/api/tokens", None).await;
    assert!(!listed.to_string().contains(&token[3..]));
    let (status, me) = fx.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(
        (status, me["role"].as_str()),
        (StatusCode::OK, Some("agent"))
    );
    assert_eq!(
        fx.call("GET", "/api/users", Some(&token), None).await.0,
        StatusCode::FORBIDDEN
    );
    let id = created["id"].as_i64().expect("id");
    assert_eq!(
        fx.as_role("admin", "DELETE", &format!("/api/tokens/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        fx.call("GET", "/api/auth/me", Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_routes_show_change_and_guard_the_chain() {
    let fx = fixture().await;
    let (_, chain) = fx.as_role("viewer", "GET", "/api/policies", None).await;
    let names: Vec<&str> = chain["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "secrets-inject",
            "circuit-breaker",
            "budget",
            "prompt-guard",
            "pii-redact"
        ]
    );
    let guard = &chain["policies"][3];
    assert_eq!(guard["failure_mode"], "fail-open");
    assert!(
        guard["hooks"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x == "tool-result"))
    );
    let pii = &chain["policies"][4];
    assert_eq!(pii["wit_version"], "0.1.0");
    assert_eq!(pii["failure_mode"], "fail-closed");
    assert_eq!(pii["status"], "active");
    assert!(
        pii["hooks"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x == "llm-request"))
    );

    let (_, after) = fx
        .as_role("admin", "POST", "/api/policies/pii-redact/disable", None)
        .await;
    assert_eq!(after["policies"][4]["status"], "disabled");
    let (status, body) = fx
        .as_role("admin", "POST", "/api/policies/nope/enable", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = fx
        .as_role(
            "admin",
            "PUT",
            "/api/policies/order",
            Some(json!({"order": ["budget", "pii-redact"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&body).contains("every policy"), "{body}");
    let (_, reordered) = fx
        .as_role(
            "admin",
            "PUT",
            "/api/policies/order",
            Some(json!({"order": ["pii-redact", "secrets-inject", "circuit-breaker", "budget", "prompt-guard"]})),
        )
        .await;
    assert_eq!(reordered["policies"][0]["name"], "pii-redact");

    // Admission errors come back verbatim.
    let (status, body) = fx.upload("junk.wasm", b"not a component", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "admission_failed");
    // pii-redact under a new name, without the capabilities it imports.
    let bytes = builtin("pii-redact").expect("pii-redact");
    let (status, body) = fx
        .upload(
            "x.wasm",
            bytes,
            Some(r#"{"name": "pii-strict", "capabilities": ["config"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("events"), "{body}");
    let (status, body) = fx
        .upload(
            "x.wasm",
            bytes,
            Some(r#"{"name": "pii-strict", "bogus": 1}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("bogus"), "{body}");
    // With the grants, it is appended under its new name.
    let (status, body) = fx.upload("x.wasm",
        bytes,
        Some(
            r#"{"name": "pii-strict", "capabilities": ["config", "events"], "config": {"mode": "block"}}"#,
        )).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["policies"][5]["name"], "pii-strict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_traces_and_limits_read_the_store() {
    let fx = fixture().await;
    let (_, usage) = fx
        .as_role("viewer", "GET", "/api/usage/aggregate", None)
        .await;
    assert_eq!(usage["totals"]["llm_calls"], 1);
    assert_eq!(usage["by_model"][0]["key"], "gpt-4o-mini");
    assert_eq!(usage["by_model"][0]["cost_usd"], 0.25);
    let (_, by_agent) = fx
        .as_role(
            "agent",
            "GET",
            &format!("/api/usage/by-agent/{AGENT_ID}"),
            None,
        )
        .await;
    assert_eq!(by_agent["totals"]["input_tokens"], 100);
    let (status, _) = fx
        .as_role("agent", "GET", "/api/usage/by-agent/nobody", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, trace) = fx
        .as_role("viewer", "GET", &format!("/api/traces/{CALL_ID}"), None)
        .await;
    assert_eq!(trace["verdicts"][0]["policy"], "budget");
    assert_eq!(trace["latency_ms"], 12.5);
    let (_, metrics) = fx
        .as_role(
            "viewer",
            "GET",
            &format!("/api/agents/{AGENT_ID}/metrics"),
            None,
        )
        .await;
    assert_eq!(metrics["llm_calls"], 1);
    assert_eq!(metrics["success_rate"], 1.0);
    assert_eq!(metrics["latency_ms"]["p50"], 12.5);

    let (status, limit) = fx
        .as_role(
            "admin",
            "POST",
            "/api/limits",
            Some(json!({"limit_usd": 20.0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{limit}");
    assert!(limit["agent_id"].is_null());
    let (status, body) = fx
        .as_role(
            "admin",
            "POST",
            "/api/limits",
            Some(json!({"limit_usd": 30.0})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = fx
        .as_role(
            "admin",
            "POST",
            "/api/limits",
            Some(json!({"limit_usd": -1.0, "agent_id": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // The running agent's budget policy now enforces the global limit.
    let (_, chain) = fx.as_role("viewer", "GET", "/api/policies", None).await;
    assert!(chain["generation"].as_u64().unwrap_or(0) > 1, "{chain}");
    let (status, body) = fx.as_role("viewer", "GET", "/api/limits/abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_streams_events_and_closes_after_logout() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::open(dir.path(), &vars(MASTER_KEY))
        .await
        .expect("plane opens");
    let bus = EventBus::new();
    let feed = ws::feed();
    ws::feed_from_bus(&bus, feed.clone());
    let mut state = AppState::new(&plane, None, feed);
    // Check the token every 200 ms instead of 30 s.
    Arc::get_mut(&mut state.0).expect("unshared").ws_recheck =
        std::time::Duration::from_millis(200);
    let server = ironhost::api::Server::bind("127.0.0.1:0", state.clone())
        .await
        .expect("bind");
    let addr = server.addr;
    tokio::spawn(server.run(std::future::pending()));

    let app = router(state);
    let login = app
        .oneshot(
            Request::post("/api/auth/login")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string(),
                ))
                .expect("request"),
        )
        .await
        .expect("login");
    let body: Value =
        serde_json::from_slice(&login.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    let token = body["access_token"].as_str().expect("token").to_owned();

    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
    assert!(refused.is_err(), "a WebSocket without a token was accepted");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?access_token={token}"))
            .await
            .expect("connect");
    let next_text = |m: Option<Result<Message, _>>| match m {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(&t).expect("json"),
        other => panic!("expected a text message, got {other:?}"),
    };
    let hello = next_text(socket.next().await);
    assert_eq!(hello["type"], "hello");
    bus.publish(
        "lg-1",
        ironhost::model::Severity::Info,
        ironhost::events::EventKind::AgentProgress {
            done: 3,
            total: Some(10),
            unit: None,
        },
    );
    let event = next_text(
        tokio::time::timeout(std::time::Duration::from_secs(2), socket.next())
            .await
            .expect("an event in time"),
    );
    assert_eq!(
        (event["type"].as_str(), event["done"].as_u64()),
        (Some("agent_progress"), Some(3))
    );

    // Logging out ends the stream.
    let client = logout_over_http(addr, &token).await;
    assert_eq!(client, 204);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the server closes the socket after logout");
    assert_eq!(closed, Some(4401));
}

/// `POST /api/auth/logout` over a real connection (plain HTTP/1.1 by hand).
async fn logout_over_http(addr: std::net::SocketAddr, token: &str) -> u16 {
    let req = format!(
        "POST /api/auth/logout HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.write_all(req.as_bytes()).expect("send");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("read");
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code")
    })
    .await
    .expect("logout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_admits_the_dashboard_dev_origin_only() {
    let fx = fixture().await;
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/agents")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .body(Body::empty())
            .expect("request")
    };
    let resp = fx
        .app
        .clone()
        .oneshot(preflight("http://localhost:5173"))
        .await
        .expect("answer");
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://localhost:5173")
    );
    let resp = fx
        .app
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .expect("answer");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_a_rest_url_is_refused_the_websocket_keeps_it() {
    let fx = fixture().await;
    let admin = fx.tokens["admin"].clone();
    let (status, body) = fx
        .send(
            Request::get(format!("/api/agents?access_token={admin}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(message(&body).contains("/ws only"), "{body}");
    let (status, body) = fx.as_role("admin", "GET", "/api/agents", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_absurd_amounts_and_malformed_agent_ids() {
    let fx = fixture().await;
    let long = "a".repeat(100_000);
    for (body, expected) in [
        (json!({"limit_usd": 1e308}), "largest limit"),
        (json!({"limit_usd": -1.0}), "non-negative"),
        (
            json!({"agent_id": "", "limit_usd": 5.0}),
            "agent_id: `` is not an agent id",
        ),
        (
            json!({"agent_id": long, "limit_usd": 5.0}),
            "agent_id: `aaaa",
        ),
        (
            json!({"agent_id": "a b", "limit_usd": 5.0}),
            "is not an agent id",
        ),
    ] {
        let (status, answer) = fx
            .as_role("admin", "POST", "/api/limits", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let m = message(&answer);
        assert!(m.contains(expected), "{body}: {m}");
        assert!(
            m.len() < 300,
            "the message echoes at most a bounded id: {m}"
        );
    }
    let (status, answer) = fx
        .as_role(
            "admin",
            "POST",
            "/api/limits",
            Some(json!({"agent_id": "lg-00000009", "limit_usd": 1e9})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_and_an_overlong_url_get_the_api_error_shape() {
    let fx = fixture().await;
    let resp = fx
        .app
        .clone()
        .oneshot(
            Request::builder()
                .method("PATCH")
                .uri("/api/agents")
                .header("authorization", format!("Bearer {}", fx.tokens["admin"]))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router answers");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET,HEAD")
    );
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("a JSON error");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(message(&body).contains("PATCH"), "{body}");

    let (status, body) = fx.as_role("admin", "POST", "/ws", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    let long = format!("/api/agents/{}", "a".repeat(10_000));
    let (status, body) = fx.as_role("admin", "GET", &long, None).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG, "{body}");
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_lock_the_name_and_even_the_right_one_waits() {
    let fx = fixture().await;
    let login = |password: &'static str| {
        Request::post("/api/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"username": "admin", "password": password}).to_string(),
            ))
            .expect("request")
    };
    for n in 0..5 {
        let (status, body) = fx.send(login("not-the-password")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}: {body}");
    }
    let resp = fx
        .app
        .clone()
        .oneshot(login(ADMIN_PASSWORD))
        .await
        .expect("router answers");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=30).contains(&wait), "{wait}");
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("a JSON error");
    assert_eq!(body["error"]["code"], "too_many_attempts", "{body}");
    assert!(message(&body).contains("user name"), "{body}");
    // Other users are not locked out by it.
    fx.login("viewer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_or_removed_user_loses_their_role_at_the_next_request() {
    let fx = fixture().await;
    let (status, body) = fx
        .as_role(
            "admin",
            "POST",
            "/api/users",
            Some(json!({"username": "second-admin", "password": "second-password-1", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, session) = fx
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "second-admin", "password": "second-password-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh = session["refresh_token"].clone();
    assert_eq!(
        fx.call("GET", "/api/users", Some(&access), None).await.0,
        StatusCode::OK
    );

    // Demoted in the store: the token made when they were admin no longer makes them one.
    sqlx::query("UPDATE users SET role = 'viewer' WHERE username = 'second-admin'")
        .execute(fx.plane.store.pool())
        .await
        .expect("demote");
    let (status, body) = fx.call("GET", "/api/users", Some(&access), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, renewed) = fx.refresh(&refresh).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(
        renewed["role"], "viewer",
        "a refresh mints the current role"
    );

    // Gone from the store (renamed: there is no route to delete users yet): nothing works.
    sqlx::query("UPDATE users SET username = 'renamed' WHERE username = 'second-admin'")
        .execute(fx.plane.store.pool())
        .await
        .expect("rename");
    let (status, body) = fx.call("GET", "/api/agents", Some(&access), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(message(&body).contains("no longer exists"), "{body}");
    let (status, body) = fx.refresh(&refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// The statuses the OpenAPI document lists for one operation.
fn documented_statuses(method: &str, template: &str) -> BTreeSet<u16> {
    let doc: Value = serde_json::from_str(ironhost::api::OPENAPI).expect("openapi.json is JSON");
    doc["paths"][template][method.to_lowercase()]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {template} is not documented"))
        .keys()
        .map(|k| k.parse().expect("a status code"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_demoted_signed_out_and_removed_through_the_api_and_errors_are_documented() {
    let fx = fixture().await;
    // Every answer below must be one the document lists for its operation.
    let mut undocumented = Vec::new();
    let mut check = |method: &str, template: &str, status: StatusCode, body: &Value| {
        if !documented_statuses(method, template).contains(&status.as_u16()) {
            undocumented.push(format!("{method} {template}: {status} {body}"));
        }
    };
    let (status, user) = fx
        .as_role(
            "admin",
            "POST",
            "/api/users",
            Some(json!({"username": "ops-lead", "password": "ops-password-1", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_i64().expect("id");
    let login = || async {
        fx.call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "ops-lead", "password": "ops-password-1"})),
        )
        .await
    };
    let (_, session) = login().await;
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh = session["refresh_token"].clone();
    assert_eq!(
        fx.call("GET", "/api/users", Some(&access), None).await.0,
        StatusCode::OK
    );

    // Demoted: the next request is a viewer's.
    let path = format!("/api/users/{id}");
    let (status, body) = fx
        .as_role("admin", "PATCH", &path, Some(json!({"role": "viewer"})))
        .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (StatusCode::OK, Some("viewer")),
        "{body}"
    );
    check("PATCH", "/api/users/{id}", status, &body);
    let (status, body) = fx.call("GET", "/api/users", Some(&access), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        fx.call("GET", "/api/agents", Some(&access), None).await.0,
        StatusCode::OK
    );

    // Signed out everywhere: the access and refresh tokens stop working; a new login works.
    let sessions = format!("/api/users/{id}/sessions");
    let (status, body) = fx.as_role("admin", "DELETE", &sessions, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["sessions_ended"].as_u64().expect("count") >= 1,
        "{body}"
    );
    check("DELETE", "/api/users/{id}/sessions", status, &body);
    assert_eq!(
        fx.call("GET", "/api/agents", Some(&access), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(fx.refresh(&refresh).await.0, StatusCode::UNAUTHORIZED);
    let (status, again) = login().await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let access = again["access_token"].as_str().expect("access").to_owned();

    // Removed: the new session ends with the user, and so does logging in.
    let (status, body) = fx.as_role("admin", "DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        fx.call("GET", "/api/agents", Some(&access), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login().await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = fx.as_role("admin", "DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    check("DELETE", "/api/users/{id}", status, &body);

    // The installation keeps an admin.
    let (_, users) = fx.as_role("admin", "GET", "/api/users", None).await;
    let admin = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "admin")
        .expect("admin")["id"]
        .as_i64()
        .expect("id");
    for (method, body) in [("PATCH", Some(json!({"role": "viewer"}))), ("DELETE", None)] {
        let (status, answer) = fx
            .as_role("admin", method, &format!("/api/users/{admin}"), body)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{method}: {answer}");
        assert!(message(&answer).contains("last admin"), "{answer}");
        check(method, "/api/users/{id}", status, &answer);
    }

    // Bad input: each refused with the documented status.
    for (method, template, path, body) in [
        (
            "PATCH",
            "/api/users/{id}",
            format!("/api/users/{admin}"),
            Some(json!({"role": "root"})),
        ),
        (
            "PATCH",
            "/api/users/{id}",
            format!("/api/users/{admin}"),
            Some(json!({"role": "viewer", "extra": 1})),
        ),
        (
            "PATCH",
            "/api/users/{id}",
            "/api/users/abc".to_owned(),
            Some(json!({"role": "viewer"})),
        ),
        (
            "PATCH",
            "/api/users/{id}",
            "/api/users/999999".to_owned(),
            Some(json!({"role": "viewer"})),
        ),
        (
            "DELETE",
            "/api/users/{id}/sessions",
            "/api/users/999999/sessions".to_owned(),
            None,
        ),
        (
            "POST",
            "/api/users",
            "/api/users".to_owned(),
            Some(json!({"username": "x", "password": "short", "role": "viewer"})),
        ),
        (
            "POST",
            "/api/users",
            "/api/users".to_owned(),
            Some(json!({"username": "admin", "password": "long-enough-1", "role": "viewer"})),
        ),
        (
            "POST",
            "/api/limits",
            "/api/limits".to_owned(),
            Some(json!({"limit_usd": -1})),
        ),
        (
            "GET",
            "/api/agents/{id}",
            "/api/agents/no-such-agent".to_owned(),
            None,
        ),
        (
            "POST",
            "/api/agents/{id}/stop",
            "/api/agents/no-such-agent/stop".to_owned(),
            None,
        ),
        (
            "DELETE",
            "/api/tokens/{id}",
            "/api/tokens/abc".to_owned(),
            None,
        ),
        (
            "GET",
            "/api/secrets/{name}",
            "/api/secrets/NOPE?environment=dev".to_owned(),
            None,
        ),
        (
            "PUT",
            "/api/secrets/{name}",
            "/api/secrets/K?environment=dev".to_owned(),
            Some(json!({"nope": 1})),
        ),
        (
            "GET",
            "/api/traces/{id}",
            "/api/traces/no-such-call".to_owned(),
            None,
        ),
    ] {
        let (status, answer) = fx.as_role("admin", method, &path, body).await;
        assert!(
            status.is_client_error(),
            "{method} {path}: {status} {answer}"
        );
        assert!(
            answer["error"]["code"].is_string(),
            "{method} {path}: {answer}"
        );
        check(method, template, status, &answer);
    }
    assert!(
        undocumented.is_empty(),
        "answers the document does not list:\n{}",
        undocumented.join("\n")
    );
}
