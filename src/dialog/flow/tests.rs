//! Flow loading: the shipped flow passes; each class of error is caught with its position.

use super::*;

fn problems(text: &str) -> Vec<String> {
    match Flow::parse(text, Path::new("t.yaml")) {
        Ok(_) => Vec::new(),
        Err(FlowError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn assert_problem(text: &str, at: &str, needle: &str) {
    let got = problems(text);
    assert!(
        got.iter().any(|p| p.starts_with(at) && p.contains(needle)),
        "wanted {at} ... {needle}, got {got:#?}"
    );
}

const MINIMAL: &str = r#"name: t
start: ask
identify: name
steps:
  - id: ask
    say: "How can I help?"
    on:
      appointments: tell
  - id: name
    say: "Your name?"
    collect: { slot: name, type: person_name }
    next: dob
  - id: dob
    say: "Date of birth?"
    collect: { slot: dob, type: date_of_birth }
    next: verify
  - id: verify
    action: verify_identity
    on:
      failed: name
      locked: bye
  - id: tell
    requires_verified: true
    action: list_appointments
    on:
      found: said
      none: bye
  - id: said
    say: "It is {appointment.when}."
    next: bye
  - id: bye
    say: "Goodbye."
    action: hangup
"#;

#[test]
fn shipped_flow_and_minimal_flow_pass() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/clinic.yaml");
    let flow = Flow::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(flow.name, "clinic");
    assert!(problems(MINIMAL).is_empty(), "{:?}", problems(MINIMAL));
}

#[test]
fn yaml_syntax_error_has_position() {
    assert_problem("name: t\nsteps: [\n  - id: a\n", "t.yaml:", "YAML error");
    assert_problem("name: t\nname: u\n", "t.yaml:2:1", "duplicate key `name`");
}

#[test]
fn unknown_keys_are_rejected_with_position() {
    let text = MINIMAL.replace(
        "    say: \"Goodbye.\"",
        "    say: \"Goodbye.\"\n    colour: blue",
    );
    assert_problem(&text, "t.yaml:33:5", "Unknown field `colour`");
}

#[test]
fn unknown_step() {
    let text = MINIMAL.replace("appointments: tell", "appointments: tel");
    assert_problem(&text, "t.yaml:8:21", "unknown step `tel`");
}

#[test]
fn unreachable_step() {
    let text = format!("{MINIMAL}  - id: orphan\n    say: \"Hi.\"\n    next: bye\n");
    assert_problem(&text, "t.yaml:34:9", "unreachable step `orphan`");
}

#[test]
fn missing_prompt() {
    let text = MINIMAL.replace("    say: \"Your name?\"\n", "");
    assert_problem(&text, "t.yaml:9:9", "has no prompt");
}

#[test]
fn phi_placeholder_before_verification() {
    let text = MINIMAL.replace("    requires_verified: true\n", "");
    let got = problems(&text);
    assert!(
        got.iter()
            .any(|p| p.contains("`list_appointments`") && p.contains("before verification")),
        "{got:#?}"
    );
    let text = MINIMAL.replace(
        "\"How can I help?\"",
        "\"How can I help? You are due {appointment.when}.\"",
    );
    assert_problem(&text, "t.yaml:6:10", "PHI placeholder `{appointment.when}`");
    let text = MINIMAL.replace(
        "\"Date of birth?\"",
        "\"Thanks {slot.name}. Date of birth?\"",
    );
    assert_problem(&text, "t.yaml:14:10", "PHI placeholder `{slot.name}`");
}

#[test]
fn slot_used_before_collected() {
    // a template reading a slot nobody collected yet on this path
    let text = MINIMAL.replace("\"Your name?\"", "\"Your name? You said {slot.dob}\"");
    let got = problems(&text);
    assert!(
        got.iter().any(|p| p.contains("before `dob` is collected")),
        "{got:#?}"
    );
    // an action needing a slot that is never collected first
    let text = MINIMAL
        .replace("identify: name", "identify: dob")
        .replace("      failed: name", "      failed: dob");
    let got = problems(&text);
    assert!(got.iter().any(|p| p.contains("needs `name`")), "{got:#?}");
}

#[test]
fn cycle_without_exit() {
    let text = MINIMAL.replace(
        "      none: bye\n",
        "      none: loop_a\n  - id: loop_a\n    say: \"A.\"\n    next: loop_b\n  - id: loop_b\n    say: \"B.\"\n    next: loop_a\n",
    );
    let got = problems(&text);
    assert!(
        got.iter()
            .any(|p| p.contains("`loop_a` is in a cycle without exit")),
        "{got:#?}"
    );
}

#[test]
fn bad_action_intent_outcome_and_placeholder() {
    assert_problem(
        &MINIMAL.replace("action: hangup", "action: hang_up"),
        "t.yaml:",
        "unknown action `hang_up`",
    );
    assert_problem(
        &MINIMAL.replace("appointments: tell", "apointments: tell"),
        "t.yaml:8:7",
        "unknown intent `apointments`",
    );
    assert_problem(
        &MINIMAL.replace("found: said", "ok: said"),
        "t.yaml:",
        "unknown outcome of `list_appointments` `ok`",
    );
    assert_problem(
        &MINIMAL.replace("{appointment.when}", "{appointment.wen}"),
        "t.yaml:",
        "unknown placeholder",
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = MINIMAL
        .replace("appointments: tell", "appointments: nowhere")
        .replace("next: dob", "next: nowhere_else");
    let got = problems(&text);
    assert!(got.len() >= 2, "{got:#?}");
}
