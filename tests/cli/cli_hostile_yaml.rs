//! Hostile input through the real binary: files that used to exhaust
//! memory, block, panic the renderer, take quadratic time or be half-read.
//! Every run here is bounded by a kill timeout (never a timing assertion),
//! and the memory-hungry ones by an address-space limit.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Driver, Run};

/// Generous: these take milliseconds when fixed; the limit only turns a
/// hang (a FIFO, an endless read) into a failure instead of a stuck CI job.
const KILL_AFTER: Duration = Duration::from_secs(30);

/// 512 MiB, the limit the issue asks the alias cap to hold under.
const AS_LIMIT: &str = "--as=536870912";

/// Runs `cmd` to completion or kills it after `KILL_AFTER`, failing the test.
fn bounded(mut cmd: Command) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("driver runs");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > KILL_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            panic!("driver still running after {KILL_AFTER:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// `driver ARGS` under `prlimit --as=512MiB`, bounded in time.
fn limited(d: &Driver, args: &[&str]) -> Run {
    let base = d.cmd();
    let mut cmd = Command::new("prlimit");
    cmd.arg(AS_LIMIT).arg(base.get_program()).args(args);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(d.site_path());
    let r = bounded(cmd);
    assert!(
        !r.stderr.contains("prlimit:"),
        "prlimit (util-linux) is needed: {}",
        r.stderr
    );
    r
}

fn run(d: &Driver, args: &[&str]) -> Run {
    let mut c = d.cmd();
    c.args(args);
    bounded(c)
}

/// Checks the exit code and that stderr says each of `needles`, however
/// miette wrapped the lines.
fn expect(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.code, code, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let flat = r
        .stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for n in needles {
        assert!(flat.contains(n), "missing {n:?} in:\n{}", r.stderr);
    }
}

/// Nine levels of nine aliases: 9^9 (387 million) strings when expanded.
fn billion_laughs() -> String {
    let mut s = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        s.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn billion_laughs_exits_2_under_512_mib() {
    let d = Driver::new();
    let doc = billion_laughs();
    assert!(doc.len() < 600, "{}", doc.len());
    let path = write(d.site_path(), "laughs.yaml", &doc);
    for args in [
        vec!["validate", path.as_str()],
        vec!["validate", "--json-output", path.as_str()],
        vec![
            "create",
            "--manifest-file",
            path.as_str(),
            "-H",
            "father",
            "--dry-run",
        ],
        vec!["create", "--manifest-file", path.as_str(), "-H", "father"],
    ] {
        let r = limited(&d, &args);
        expect(&r, 2, &["aliases expand to more than"]);
    }
}

#[test]
fn billion_laughs_in_site_config_files_exits_2() {
    let manifest = "schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n";
    // site.yaml is read by every command, nodes/HOST.yaml when a host is resolved.
    for (file, args) in [
        (
            "site.yaml",
            vec![
                "create",
                "--manifest-file",
                "m.yaml",
                "-H",
                "father",
                "--dry-run",
            ],
        ),
        ("nodes/father.yaml", vec!["preflight", "-H", "father"]),
    ] {
        let d = Driver::new();
        std::fs::create_dir_all(d.site_path().join("nodes")).unwrap();
        write(d.site_path(), file, &billion_laughs());
        write(d.site_path(), "m.yaml", manifest);
        let r = limited(&d, &args);
        expect(&r, 2, &[file, "aliases expand to more than"]);
    }
}

#[test]
fn a_65k_character_line_does_not_panic_the_renderer() {
    let d = Driver::new();
    let long = "x".repeat(66_000);
    let path = write(
        d.site_path(),
        "long.yaml",
        &format!(
            "schema_version: 2\nname: m\nnodes:\n  - {{name: a, type: vm, d: {long}, bogus: 1}}\n"
        ),
    );
    let r = run(&d, &["validate", &path]);
    expect(
        &r,
        2,
        &["Unknown key 'd'", "Unknown key 'bogus'", "long.yaml:4:"],
    );
    // The snippet is a window around each problem, not the 66k line.
    assert!(r.stderr.len() < 8_000, "{} bytes of stderr", r.stderr.len());
}

#[test]
fn thousands_of_unknown_keys_are_counted_and_capped() {
    let d = Driver::new();
    let mut doc = String::from("schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n");
    for i in 0..16_000 {
        doc.push_str(&format!("k{i}: 1\n"));
    }
    let path = write(d.site_path(), "keys.yaml", &doc);
    let r = run(&d, &["validate", &path]);
    expect(
        &r,
        2,
        &[
            "invalid manifest (16000 problems",
            "and 15900 more problems",
            "Unknown key 'k99'",
        ],
    );
    assert!(!r.stderr.contains("Unknown key 'k100'"), "{}", r.stderr);
    let r = run(&d, &["validate", "--json-output", &path]);
    assert_eq!(r.code, 2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let m = &v["manifests"][0];
    assert_eq!(m["problem_count"], 16_000);
    // The first 100, then one line saying how many more there are.
    let problems = m["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 101);
    assert!(problems[100]["message"]
        .as_str()
        .unwrap()
        .contains("15900 more problems"));
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let d = Driver::new();
    let fifo = d.site_path().join("pipe.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let fifo = fifo.display().to_string();
    let r = run(&d, &["validate", &fifo]);
    expect(&r, 2, &["not a regular file (a FIFO)"]);
    let r = run(
        &d,
        &[
            "create",
            "--manifest-file",
            &fifo,
            "-H",
            "father",
            "--dry-run",
        ],
    );
    expect(&r, 2, &["not a regular file (a FIFO)"]);

    // The same for a site-config file.
    let d = Driver::new();
    let site = d.site_path().join("site.yaml");
    assert!(Command::new("mkfifo")
        .arg(&site)
        .status()
        .unwrap()
        .success());
    let m = write(
        d.site_path(),
        "m.yaml",
        "schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n",
    );
    let r = run(&d, &["validate", &m]);
    expect(&r, 2, &["site.yaml", "not a regular file (a FIFO)"]);
}

#[test]
fn devices_and_directories_are_refused() {
    let d = Driver::new();
    let r = limited(&d, &["validate", "/dev/zero"]);
    expect(
        &r,
        2,
        &["/dev/zero", "not a regular file (a character device)"],
    );
    let dir = d.site_path().display().to_string();
    let r = run(&d, &["validate", &dir]);
    expect(&r, 2, &["not a regular file (a directory)"]);
}

#[test]
fn files_over_32_mib_are_refused() {
    let d = Driver::new();
    let p = d.site_path().join("big.yaml");
    // Sparse: no 33 MiB written to disk, but that is its size.
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(33 * 1024 * 1024).unwrap();
    let r = run(&d, &["validate", &p.display().to_string()]);
    expect(&r, 2, &["larger than the 32 MiB limit"]);
}

#[test]
fn duplicate_keys_are_refused_with_both_locations() {
    let d = Driver::new();
    let path = write(
        d.site_path(),
        "dup.yaml",
        "schema_version: 2\nname: m\nnodes:\n  - name: a\n    type: vm\n    type: ct\n",
    );
    let r = run(&d, &["validate", &path]);
    expect(
        &r,
        2,
        &[
            "duplicate key 'type'",
            "dup.yaml:6:5",
            "first defined here",
            "defined again here",
        ],
    );
    // Site-config files share the loader.
    let d = Driver::new();
    write(
        d.site_path(),
        "site.yaml",
        "defaults:\n  bridge: a\n  bridge: b\n",
    );
    let m = write(
        d.site_path(),
        "m.yaml",
        "schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n",
    );
    let r = run(&d, &["validate", &m]);
    expect(
        &r,
        2,
        &["site.yaml:3:3", "duplicate key 'bridge'", "line 2"],
    );
}

#[test]
fn a_second_document_is_refused() {
    let d = Driver::new();
    let ok = "schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n";
    for (name, second) in [("broken", "---\n: : [\n"), ("valid", "---\nname: other\n")] {
        let path = write(
            d.site_path(),
            &format!("{name}.yaml"),
            &format!("{ok}{second}"),
        );
        let r = run(&d, &["validate", &path]);
        expect(
            &r,
            2,
            &["a second YAML document", &format!("{name}.yaml:5:1")],
        );
    }
}

#[test]
fn an_arbitrary_file_is_not_echoed() {
    let d = Driver::new();
    // Like /etc/passwd: one plain scalar over every line. Like /etc/shadow
    // (lines end in ':'): a mapping whose every line is a key.
    for (end, says) in [
        ("/bin/sh", "must be a YAML mapping"),
        (":::", "Not a manifest"),
    ] {
        let lines: Vec<String> = (0..200)
            .map(|i| format!("user{i}:$6$salt{i}$hashhashhash{i}:19000:0:99999:7{end}"))
            .collect();
        let path = write(d.site_path(), "secret", &(lines.join("\n") + "\n"));
        let r = run(&d, &["validate", &path]);
        expect(&r, 2, &[says]);
        // The problem's line and its neighbour, as for any problem.
        let shown = lines
            .iter()
            .filter(|l| r.stderr.contains(l.as_str()))
            .count();
        assert!(shown <= 2, "{shown} lines echoed:\n{}", r.stderr);
        let r = run(&d, &["validate", "--json-output", &path]);
        assert!(!r.stdout.contains("user1"), "{}", r.stdout);
        assert!(!r.stderr.contains("user3"), "{}", r.stderr);
    }
}
