//! Parses and checks a DAG file completely before anything runs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use kelp_operators::decode::{DecodeOptions, Limits};
use kelp_operators::plan::{PlanNode, VideoPlan};
use kelp_operators::registry::{self, closest, OperatorInfo};
use kelp_operators::{Operator, OperatorError, Product};
use serde::de::DeserializeOwned;
use std::sync::Arc;

use super::spec::{Dag, EngineSpec, NodeSpec, OutputSpec, PassSpec, SourceSpec};
use crate::dataset::schema::DatasetSchema;
use crate::error::{PipelineError, Result};
use crate::filter::{self, FilterConfig, SqlFilter};
use crate::store;

/// A validated DAG and the per-video plan built from it.
#[derive(Clone)]
pub struct CompiledDag {
    pub dag: Dag,
    /// The per-video program of every node, filters included, in DAG order.
    pub plan: VideoPlan,
    /// The dataset's tables: the base tables plus what every node declares.
    pub schema: DatasetSchema,
}

/// Operators the pipeline runs itself (on rows, not pixels), besides the video operators of
/// `kelp_operators::registry`.
pub const ROW_OPERATORS: &[(&str, &str)] = &[(
    "filter",
    "keeps the clips a SQL predicate (`where = \"...\"`) selects; the rest go to `rejections`",
)];

const TOP_KEYS: &[&str] = &[
    "description",
    "source",
    "output",
    "engine",
    "limits",
    "node",
    "pass",
];
const NODE_KEYS: &[&str] = &["id", "op", "after"];

/// Reads, parses and validates a DAG file.
pub fn load(path: &Path) -> Result<CompiledDag> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Dag {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&file, &text)
}

/// Parses and validates DAG text; `file` names it in messages.
pub fn parse(file: &str, text: &str) -> Result<CompiledDag> {
    parse_with(file, text, &[])
}

/// [`parse`] with operators beyond the registry's (tests register their own this way).
pub fn parse_with(file: &str, text: &str, extra: &[OperatorInfo]) -> Result<CompiledDag> {
    let fail = |message: String| PipelineError::Dag {
        file: file.to_string(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(format!("not valid TOML: {}", e.to_string().trim())))?;
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            return Err(fail(unknown_key_message(key, TOP_KEYS, "top-level")));
        }
    }
    let description = match table.get("description") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fail("\"description\" must be a string".into())),
    };
    let source: SourceSpec = section(&table, "source")
        .map_err(fail)?
        .ok_or_else(|| fail("missing [source] with uri = \"...\"".into()))?;
    let output: OutputSpec = section(&table, "output")
        .map_err(fail)?
        .ok_or_else(|| fail("missing [output] with uri = \"...\"".into()))?;
    let engine: EngineSpec = section(&table, "engine").map_err(fail)?.unwrap_or_default();
    let limits: Limits = section(&table, "limits").map_err(fail)?.unwrap_or_default();
    if output.shard_rows == 0 {
        return Err(fail("[output] shard_rows must be at least 1".into()));
    }
    if engine.decode_threads == 0
        || engine.queue == 0
        || engine.threads == Some(0)
        || engine.partition_videos == 0
        || engine.partition_bytes == 0
        || engine.partition_attempts == 0
        || engine.spill_bytes == 0
    {
        return Err(fail(
            "[engine] threads, decode_threads, queue, partition_videos, partition_bytes, partition_attempts and spill_bytes must be at least 1".into(),
        ));
    }
    if !(engine.lease_s.is_finite() && engine.lease_s >= 0.1) {
        return Err(fail(
            "[engine] lease_s must be at least 0.1 (seconds)".into(),
        ));
    }
    store::resolve_with(&source.uri, &source.store_options())
        .map_err(|e| fail(format!("[source] uri: {e}")))?;
    store::resolve_with(&output.uri, &output.store_options())
        .map_err(|e| fail(format!("[output] uri: {e}")))?;

    let nodes = node_specs(&table).map_err(fail)?;
    let ordered = order(&nodes).map_err(fail)?;
    let mut plan_nodes = Vec::with_capacity(ordered.len());
    let mut schema = DatasetSchema::base();
    let mut have: Vec<Product> = Vec::new();
    for node in &ordered {
        let named = |e: String| fail(format!("node \"{}\": {e}", node.id));
        let info = extra
            .iter()
            .chain(registry::OPERATORS.iter())
            .find(|o| o.name == node.op);
        let outputs = match info {
            Some(info) => (info.outputs)(),
            None if node.op == "filter" => filter::outputs(),
            None => return Err(named(unknown_operator(&node.op, extra))),
        };
        // Inputs first: the clearest message for a node out of order.
        for need in &outputs.needs {
            if !have.contains(need) {
                return Err(named(format!(
                    "missing input: needs {}",
                    registry::missing_input_hint(*need)
                )));
            }
        }
        let op: Arc<dyn Operator> = match info {
            Some(info) => (info.build)(&node.params).map_err(|e| named(e.to_string()))?,
            None => {
                let config: FilterConfig =
                    registry::params(&node.params).map_err(|e| named(e.to_string()))?;
                // A filter sees the clip columns of the nodes before it.
                let clips = schema
                    .table(kelp_operators::output::TABLE_CLIPS)
                    .map(|t| t.schema.clone())
                    .ok_or_else(|| named("no clips table before it".into()))?;
                Arc::new(SqlFilter::new(&node.id, &config.predicate, &clips).map_err(named)?)
            }
        };
        have.extend(outputs.produces.iter().copied());
        schema.add(&node.id, &outputs).map_err(named)?;
        plan_nodes.push(PlanNode {
            id: node.id.clone(),
            op,
        });
    }
    let decode = DecodeOptions {
        threads: engine.decode_threads,
        limits,
        ..Default::default()
    };
    let plan = VideoPlan::new(plan_nodes, decode).map_err(|e| match e {
        OperatorError::MissingInput { op, needs } => {
            fail(format!("node \"{op}\": missing input: needs {needs}"))
        }
        other => fail(other.to_string()),
    })?;
    let passes = pass_specs(&table).map_err(fail)?;
    let dag = Dag {
        file: file.to_string(),
        description,
        source,
        output,
        engine,
        nodes: ordered,
        passes,
    };
    Ok(CompiledDag { dag, plan, schema })
}

/// The `[[pass]]` entries, each built once so a bad name or parameter fails here.
fn pass_specs(table: &toml::Table) -> std::result::Result<Vec<PassSpec>, String> {
    let Some(value) = table.get("pass") else {
        return Ok(Vec::new());
    };
    let entries = value
        .as_array()
        .ok_or("\"pass\" must be an array of tables: write [[pass]]")?;
    let mut out: Vec<PassSpec> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let t = entry
            .as_table()
            .ok_or_else(|| format!("pass #{}: must be a table", i + 1))?;
        let Some(toml::Value::String(op)) = t.get("op") else {
            return Err(format!("pass #{}: missing \"op\" (the pass name)", i + 1));
        };
        let info = crate::pass::lookup(op).ok_or_else(|| {
            let known = crate::pass::names();
            let hint = closest(op, known.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            format!(
                "pass \"{op}\": unknown pass{hint}; known passes: {}",
                known.join(", ")
            )
        })?;
        if out.iter().any(|p| &p.op == op) {
            return Err(format!("pass \"{op}\": listed twice"));
        }
        let params: toml::Table = t
            .iter()
            .filter(|(k, _)| k.as_str() != "op")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (info.build)(&params).map_err(|e| format!("pass \"{op}\": {e}"))?;
        out.push(PassSpec {
            op: op.clone(),
            params,
        });
    }
    Ok(out)
}

fn unknown_operator(op: &str, extra: &[OperatorInfo]) -> String {
    let known: Vec<&str> = registry::OPERATORS
        .iter()
        .chain(extra.iter())
        .map(|o| o.name)
        .chain(ROW_OPERATORS.iter().map(|(n, _)| *n))
        .collect();
    let hint = closest(op, known.iter().copied())
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default();
    format!(
        "unknown operator \"{op}\"{hint}; known operators: {}",
        known.join(", ")
    )
}

fn unknown_key_message(key: &str, known: &[&str], place: &str) -> String {
    let hint = closest(key, known.iter().copied())
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default();
    format!(
        "unknown {place} key \"{key}\"{hint}; known keys: {}",
        known.join(", ")
    )
}

fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
) -> std::result::Result<Option<T>, String> {
    let Some(value) = table.get(name) else {
        return Ok(None);
    };
    let Some(section) = value.as_table() else {
        return Err(format!("[{name}] must be a table"));
    };
    registry::params::<T>(section)
        .map(Some)
        .map_err(|e| format!("[{name}]: {e}"))
}

fn node_specs(table: &toml::Table) -> std::result::Result<Vec<NodeSpec>, String> {
    let Some(value) = table.get("node") else {
        return Err("no [[node]] entries: a DAG needs at least one operator".into());
    };
    let entries = value
        .as_array()
        .ok_or("\"node\" must be an array of tables: write [[node]]")?;
    let mut nodes = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let t = entry
            .as_table()
            .ok_or_else(|| format!("node #{}: must be a table", i + 1))?;
        let op = match t.get("op") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("node #{}: \"op\" must be a string", i + 1)),
            None => {
                return Err(format!(
                    "node #{}: missing \"op\" (the operator name)",
                    i + 1
                ))
            }
        };
        let id = match t.get("id") {
            Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                return Err(format!(
                    "node #{}: \"id\" must be a non-empty string",
                    i + 1
                ))
            }
            None => op.clone(),
        };
        if let Some(prev) = seen.insert(id.clone(), i) {
            return Err(format!(
                "node \"{id}\": duplicate id (nodes #{} and #{}); give one an explicit id",
                prev + 1,
                i + 1
            ));
        }
        let after = match t.get("after") {
            None => nodes
                .last()
                .map(|n: &NodeSpec| vec![n.id.clone()])
                .unwrap_or_default(),
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        format!("node \"{id}\": \"after\" must list node ids (strings)")
                    })
                })
                .collect::<std::result::Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "node \"{id}\": \"after\" must be a node id or a list of them"
                ))
            }
        };
        let params: toml::Table = t
            .iter()
            .filter(|(k, _)| !NODE_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        nodes.push(NodeSpec {
            id,
            op,
            after,
            params,
        });
    }
    Ok(nodes)
}

/// Topological order that keeps file order where the `after` links allow it.
fn order(nodes: &[NodeSpec]) -> std::result::Result<Vec<NodeSpec>, String> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut indegree = vec![0usize; nodes.len()];
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for a in &n.after {
            let Some(&j) = index.get(a.as_str()) else {
                let hint = closest(a, nodes.iter().map(|n| n.id.as_str()))
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "node \"{}\": after = \"{a}\" names no node{hint}",
                    n.id
                ));
            };
            if j == i {
                return Err(format!("node \"{}\": cannot run after itself", n.id));
            }
            indegree[i] += 1;
            children.entry(j).or_default().push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
    let mut out = Vec::with_capacity(nodes.len());
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
        out.push(nodes[i].clone());
        for &c in children.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if out.len() != nodes.len() {
        let stuck: Vec<&str> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| indegree[*i] > 0)
            .map(|(_, n)| n.id.as_str())
            .collect();
        return Err(format!(
            "the \"after\" links form a cycle among nodes: {}",
            stuck.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [source]
        uri = "samples"
        [output]
        uri = "out/x"
        [[node]]
        op = "probe"
        [[node]]
        op = "shots"
        [[node]]
        op = "window"
        min_s = 1.0
    "#;

    fn err_of(text: &str) -> String {
        match parse("dags/t.toml", text) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_dag_compiles_in_order() {
        let c = parse("dags/t.toml", GOOD).unwrap();
        let ids: Vec<_> = c.dag.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["probe", "shots", "window"]);
    }

    #[test]
    fn typo_in_operator_name_is_named_with_a_suggestion() {
        let e = err_of(&GOOD.replace("op = \"shots\"", "op = \"shot\""));
        assert!(
            e.starts_with(
                "dags/t.toml: node \"shot\": unknown operator \"shot\" (did you mean \"shots\"?)"
            ),
            "{e}"
        );
    }

    #[test]
    fn typo_in_parameter_names_file_node_and_key() {
        let e = err_of(&GOOD.replace("min_s = 1.0", "min_ss = 1.0"));
        assert!(
            e.starts_with(
                "dags/t.toml: node \"window\": unknown key \"min_ss\" (did you mean \"min_s\"?)"
            ),
            "{e}"
        );
    }

    #[test]
    fn wrong_typed_parameter_names_the_key() {
        let e = err_of(&GOOD.replace("min_s = 1.0", "min_s = \"long\""));
        assert!(
            e.contains("node \"window\": key \"min_s\": invalid type: string \"long\""),
            "{e}"
        );
    }

    #[test]
    fn missing_input_is_reported() {
        let e = err_of(&GOOD.replace("op = \"shots\"", "op = \"attributes\""));
        assert!(
            e.contains(
                "node \"window\": missing input: needs shots (add a `shots` node before it)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_per_clip_operator_before_window_is_refused_naming_the_node() {
        let e = err_of(&GOOD.replace(
            "op = \"window\"",
            "op = \"crop\"\n[[node]]\nop = \"window\"",
        ));
        assert!(
            e.starts_with("dags/t.toml: node \"crop\": missing input: needs clips (add a `window` node before it)"),
            "{e}"
        );
        let e = err_of(&GOOD.replace(
            "op = \"window\"",
            "op = \"filter\"\nwhere = \"true\"\n[[node]]\nop = \"window\"",
        ));
        assert!(
            e.contains("node \"filter\": missing input: needs clips"),
            "{e}"
        );
    }

    #[test]
    fn a_filter_sees_only_the_columns_of_nodes_before_it() {
        let after = GOOD.to_string()
            + "[[node]]\nop = \"filter\"\nwhere = \"sharpness > 1\"\n[[node]]\nop = \"sharpness\"\n";
        let e = err_of(&after);
        assert!(
            e.contains("node \"filter\"") && e.contains("sharpness"),
            "{e}"
        );
        let before = GOOD.to_string()
            + "[[node]]\nop = \"sharpness\"\n[[node]]\nop = \"filter\"\nwhere = \"sharpness > 1\"\n";
        let c = parse("dags/t.toml", &before).unwrap();
        let ids: Vec<_> = c.plan.nodes().iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["probe", "shots", "window", "sharpness", "filter"]);
    }

    #[test]
    fn cycles_and_dangling_after_are_reported() {
        let e = err_of(&GOOD.replace("min_s = 1.0", "after = \"shotz\""));
        assert!(
            e.contains("after = \"shotz\" names no node (did you mean \"shots\"?)"),
            "{e}"
        );
    }

    #[test]
    fn engine_threads_is_read_under_its_old_name_too() {
        let with = |line: &str| {
            let text = GOOD.replace("[output]", &format!("[engine]\n{line}\n[output]"));
            parse("dags/t.toml", &text).unwrap().dag.engine.threads
        };
        assert_eq!(with("threads = 3"), Some(3));
        assert_eq!(with("workers = 2"), Some(2));
    }

    #[test]
    fn bad_uri_scheme_is_reported() {
        let e = err_of(&GOOD.replace("out/x", "ftp://h/x"));
        assert!(
            e.contains("[output] uri") && e.contains("unsupported scheme"),
            "{e}"
        );
    }
}
