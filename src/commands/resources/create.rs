//! `driver vm|ct create`: what to make from flags and `-f FILE` (YAML or JSON, the same
//! keys; flags win), then `actions::resources::create`.

use std::path::Path;
use std::time::Duration;

use actions::resources::create::{self, CreateSpec};
use actions::resources::Kind;
use serde::Serialize;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::{run_err, with_conn, Conn, Failure};
use crate::cli::resources::{CreateArgs, Output};
use crate::render::resources as out;

fn json_of(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(json_of).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, json_of(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// The spec in FILE: YAML (JSON is YAML too).
fn read_spec(path: &Path) -> Result<CreateSpec, Failure> {
    let bad = |m: String| Failure::usage(miette::miette!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| bad(e.to_string()))?;
    let doc = docs.first().map(json_of).unwrap_or(Value::Null);
    serde_json::from_value(doc).map_err(|e| bad(e.to_string()))
}

fn spec_of(a: &CreateArgs) -> Result<CreateSpec, Failure> {
    let mut s = match &a.file {
        Some(f) => read_spec(f)?,
        None => CreateSpec::default(),
    };
    if let Some(n) = &a.name {
        s.name = n.clone();
    }
    macro_rules! over {
        ($($f:ident),*) => { $( if a.$f.is_some() { s.$f = a.$f.clone(); } )* };
    }
    over!(vmid, template, ostemplate, iso, cores, memory, disk, storage, bridge);
    if !a.tags.is_empty() {
        s.tags = a.tags.clone();
    }
    s.full |= a.full;
    s.start |= a.start;
    if s.name.is_empty() {
        return Err(Failure::usage(miette::miette!(
            help = "e.g. `driver vm create web-1 -H sim --template debian-12`",
            "the new guest needs a name (NAME, or `name:` in the file)"
        )));
    }
    Ok(s)
}

#[derive(Serialize)]
struct Created<'a> {
    kind: &'static str,
    vmid: Option<u32>,
    name: &'a str,
    created: bool,
    spec: &'a CreateSpec,
}

pub fn run(kind: Kind, a: &CreateArgs, site: Option<&Path>) -> Result<(), Failure> {
    let spec = spec_of(a)?;
    let vmid = if a.dry_run {
        None
    } else {
        Some(with_conn(&a.host, site, async |c: &Conn| {
            create::create(
                &c.client,
                &c.host,
                kind,
                &spec,
                Duration::from_secs(a.timeout),
            )
            .await
            .map_err(run_err)
        })?)
    };
    let r = Created {
        kind: kind.name(),
        vmid,
        name: &spec.name,
        created: vmid.is_some(),
        spec: &spec,
    };
    match (a.output, vmid) {
        (Output::Json | Output::Yaml, _) => crate::render::out(&out::document(&r, a.output)),
        (_, Some(id)) => crate::outln!("{}/{} created (vmid {id})", kind.name(), spec.name),
        (_, None) => {
            crate::outln!("would create {} '{}' (dry run):", kind.name(), spec.name);
            crate::render::out(&out::yaml(&serde_json::to_value(&spec).unwrap_or_default()));
        }
    }
    Ok(())
}
