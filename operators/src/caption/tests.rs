use super::*;
use crate::registry::params;

fn build(text: &str) -> std::result::Result<Caption, String> {
    let table: toml::Table = text.parse().unwrap();
    let config = params::<CaptionConfig>(&table).map_err(|e| e.message)?;
    Caption::new(config).map_err(|e| e.to_string())
}

#[test]
fn the_default_is_the_offline_structured_captioner() {
    let c = build("").unwrap();
    assert!(c.remote().is_none());
    assert!(c.resume_job(b"k\n{}").is_err());
}

#[test]
fn an_openai_node_needs_an_endpoint_and_a_model_and_names_its_chat_url() {
    let e = build("backend = \"openai\"\nmodel = \"m\"").err().unwrap();
    assert!(e.contains("needs endpoint"), "{e}");
    let e = build("backend = \"openai\"\nendpoint = \"http://h:1/v1\"")
        .err()
        .unwrap();
    assert!(e.contains("needs model"), "{e}");
    let c = build("backend = \"openai\"\nendpoint = \"http://h:1/v1/\"\nmodel = \"m\"").unwrap();
    let spec = c.remote().unwrap();
    assert_eq!(spec.endpoint.url, "http://h:1/v1/chat/completions");
    assert_eq!(spec.table, "captions");
    let c =
        build("backend = \"openai\"\nendpoint = \"https://h/x/chat/completions\"\nmodel = \"m\"")
            .unwrap();
    assert_eq!(
        c.remote().unwrap().endpoint.url,
        "https://h/x/chat/completions"
    );
}

#[test]
fn a_key_pasted_into_api_key_env_is_refused_without_being_repeated() {
    let e = build(
        "backend = \"openai\"\nendpoint = \"http://h/v1\"\nmodel = \"m\"\napi_key_env = \"sk-SECRETSECRET\"",
    )
    .err()
    .unwrap();
    assert!(e.contains("must name an environment variable"), "{e}");
    assert!(!e.contains("SECRETSECRET"), "{e}");
}

#[test]
fn openai_keys_on_a_structured_node_and_unknown_prompt_variables_are_named() {
    let e = build("endpoint = \"http://h/v1\"").err().unwrap();
    assert!(
        e.contains("endpoint is a parameter of backend = \"openai\""),
        "{e}"
    );
    let e = build(
        "backend = \"openai\"\nendpoint = \"http://h/v1\"\nmodel = \"m\"\nprompt = \"Describe {frame} frames\"",
    )
    .err()
    .unwrap();
    assert!(e.contains("unknown variable {frame}"), "{e}");
    let e = build(
        "backend = \"openai\"\nendpoint = \"http://h/v1\"\nmodel = \"m\"\nshort_prompt = \"Shorten it\"",
    )
    .err()
    .unwrap();
    assert!(e.contains("must contain {caption}"), "{e}");
    let e = build("frams = 3").err().unwrap();
    assert!(e.contains("did you mean \"frames\""), "{e}");
}

#[test]
fn template_variables_are_identifiers_in_braces_and_json_braces_are_text() {
    assert_eq!(
        template_vars("a {frames} b {\"caption\": 1} {duration}"),
        vec!["frames", "duration"]
    );
    assert!(template_vars("no vars { here").is_empty());
}
