//! `carevoice flows check` as an administrator meets it: the shipped flows pass, a broken flow
//! fails with file:line:column for every problem and a non-zero exit, never a panic.

mod support;

use support::carevoice::run;
use support::repo_root;

#[test]
fn shipped_flows_pass() {
    let out = run(&["flows", "check", "flows"], &repo_root(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("flows/clinic.yaml: ok"), "{stdout}");
}

#[test]
fn broken_flows_fail_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\nstart: greet\nidentify: greet\nsteps:\n  - id: greet\n    say: \"Hello.\"\n    nxet: bye\n",
    )
    .unwrap();
    let syntax = dir.path().join("syntax.yaml");
    std::fs::write(&syntax, "name: x\nsteps: [\n").unwrap();
    let phi = dir.path().join("phi.yaml");
    std::fs::write(
        &phi,
        "name: x\nstart: greet\nidentify: greet\nsteps:\n  - id: greet\n    say: \"Your appointment is {appointment.when}.\"\n    action: hangup\n",
    )
    .unwrap();
    let out = run(
        &["flows", "check", dir.path().to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("bad.yaml:7:5:") && err.contains("nxet"),
        "{err}"
    );
    assert!(
        err.contains("syntax.yaml:") && err.contains("YAML error"),
        "{err}"
    );
    assert!(
        err.contains("phi.yaml:6:10:") && err.contains("PHI placeholder `{appointment.when}`"),
        "{err}"
    );
    assert!(err.contains("error: 3 of 3 flow file(s) invalid"), "{err}");
    let out = run(
        &["flows", "check", "/nonexistent/flow.yaml"],
        dir.path(),
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/flow.yaml: cannot read flow file")
    );
}
