//! The W3C WebDriver protocol (https://www.w3.org/TR/webdriver2/), the few commands the browser
//! test sends to chromedriver, as JSON over HTTP with reqwest (already in the build through
//! object_store). A WebDriver client crate (fantoccini) pulls in a second HTTP stack, ICU
//! segmentation data and a `syn` feature that rebuilds every proc macro and so the whole
//! workspace for this one test; the protocol itself is a dozen endpoints.

use base64::Engine;
use serde_json::{json, Value};

/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub enum Locator<'a> {
    Css(&'a str),
}

impl Locator<'_> {
    fn body(&self) -> Value {
        match self {
            Locator::Css(css) => json!({ "using": "css selector", "value": css }),
        }
    }
}

/// One browser session.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/<id>`
    session: String,
}

/// An element of the page.
pub struct Element {
    client: Client,
    id: String,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method.clone(), url);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let reply: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{method} {url}: {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    let value = reply.get("value").cloned().unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!(
            "{method} {url}: {status}: {} {}",
            value["error"], value["message"]
        ));
    }
    Ok(value)
}

impl Client {
    /// Opens a session on the WebDriver server at `driver` (`http://127.0.0.1:PORT`).
    pub async fn connect(driver: &str, capabilities: Value) -> Result<Client, String> {
        // A WebDriver command that hangs fails the test instead of stalling it.
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        let value = call(
            &http,
            reqwest::Method::POST,
            &format!("{driver}/session"),
            Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
        )
        .await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {value}"))?;
        Ok(Client {
            http,
            session: format!("{driver}/session/{id}"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        call(&self.http, reqwest::Method::GET, &url, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        call(&self.http, reqwest::Method::POST, &url, Some(body)).await
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    pub async fn title(&self) -> Result<String, String> {
        Ok(self.get("/title").await?.as_str().unwrap_or("").to_string())
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    fn element(&self, v: &Value) -> Result<Element, String> {
        let id = v[ELEMENT]
            .as_str()
            .ok_or_else(|| format!("not an element reference: {v}"))?;
        Ok(Element {
            client: self.clone(),
            id: id.to_string(),
        })
    }

    pub async fn find(&self, locator: Locator<'_>) -> Result<Element, String> {
        let v = self.post("/element", locator.body()).await?;
        self.element(&v)
    }

    pub async fn find_all(&self, locator: Locator<'_>) -> Result<Vec<Element>, String> {
        let v = self.post("/elements", locator.body()).await?;
        v.as_array()
            .ok_or_else(|| format!("not a list of elements: {v}"))?
            .iter()
            .map(|e| self.element(e))
            .collect()
    }

    /// The viewport as PNG bytes.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        let v = self.get("/screenshot").await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .map_err(|e| format!("screenshot: {e}"))
    }

    /// Ends the session (the browser quits).
    pub async fn close(&self) -> Result<(), String> {
        call(&self.http, reqwest::Method::DELETE, &self.session, None)
            .await
            .map(drop)
    }
}

impl Element {
    fn path(&self, what: &str) -> String {
        format!("/element/{}/{what}", self.id)
    }

    pub async fn click(&self) -> Result<(), String> {
        self.client
            .post(&self.path("click"), json!({}))
            .await
            .map(drop)
    }

    pub async fn clear(&self) -> Result<(), String> {
        self.client
            .post(&self.path("clear"), json!({}))
            .await
            .map(drop)
    }

    pub async fn send_keys(&self, text: &str) -> Result<(), String> {
        self.client
            .post(&self.path("value"), json!({ "text": text }))
            .await
            .map(drop)
    }

    pub async fn attr(&self, name: &str) -> Result<Option<String>, String> {
        let v = self
            .client
            .get(&self.path(&format!("attribute/{name}")))
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    pub async fn text(&self) -> Result<String, String> {
        let v = self.client.get(&self.path("text")).await?;
        Ok(v.as_str().unwrap_or("").to_string())
    }
}
