//! Intake flows: the YAML an administrator edits (schema in `flows/README.md`), loaded into a
//! checked [`Flow`]. Every problem is reported with file:line:column; a flow with any problem is
//! refused as a whole.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use marked_yaml::{LoaderOptions, Spanned};
use serde::Deserialize;

/// One problem in a flow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowProblem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for FlowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{path}: cannot read flow file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FlowProblem>),
}

/// What a slot holds, which decides the parser that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    PersonName,
    DateOfBirth,
    Phone,
    DateTime,
    Provider,
    YesNo,
    Digits,
    FreeText,
}

impl SlotType {
    /// Slots that identify a person: never read back before verification.
    pub fn is_identifying(self) -> bool {
        matches!(self, Self::PersonName | Self::DateOfBirth | Self::Phone)
    }
}

/// What a step does besides speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    VerifyIdentity,
    ListAppointments,
    FindSlots,
    Book,
    Cancel,
    Reschedule,
    TakeMessage,
    Escalate,
    Hangup,
}

impl ActionKind {
    pub const ALL: [(&'static str, ActionKind); 9] = [
        ("verify_identity", Self::VerifyIdentity),
        ("list_appointments", Self::ListAppointments),
        ("find_slots", Self::FindSlots),
        ("book", Self::Book),
        ("cancel", Self::Cancel),
        ("reschedule", Self::Reschedule),
        ("take_message", Self::TakeMessage),
        ("escalate", Self::Escalate),
        ("hangup", Self::Hangup),
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, a)| *a)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }

    /// Outcomes the engine reports after the action, which `on:` may map.
    pub fn outcomes(self) -> &'static [&'static str] {
        match self {
            Self::VerifyIdentity => &["verified", "failed", "locked", "error"],
            Self::ListAppointments => &["found", "none", "error"],
            Self::FindSlots => &["found", "none", "error"],
            Self::Book => &["booked", "taken", "gone", "error"],
            Self::Cancel => &["cancelled", "error"],
            Self::Reschedule => &["moved", "taken", "gone", "rolled_back", "error"],
            Self::TakeMessage => &["sent", "error"],
            Self::Escalate | Self::Hangup => &[],
        }
    }

    /// Slots (by name) the action reads; they must be collected on every path to it.
    pub fn needs(self) -> &'static [&'static str] {
        match self {
            Self::VerifyIdentity => &["name", "dob"],
            Self::TakeMessage => &["message"],
            Self::Book | Self::Reschedule => &["offer"],
            Self::Cancel => &["appointment"],
            _ => &[],
        }
    }

    /// Values the action produces for later steps.
    pub fn produces(self) -> &'static [&'static str] {
        match self {
            Self::ListAppointments => &["appointment"],
            Self::FindSlots => &["offer"],
            _ => &[],
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Escalate | Self::Hangup)
    }
}

/// Intents a caller's turn may be classified as (the labels `on:` maps in waiting steps).
pub const INTENTS: &[&str] = &[
    "book",
    "cancel",
    "reschedule",
    "appointments",
    "message",
    "human",
    "question",
    "yes",
    "no",
    "goodbye",
    "third_party",
    "collected",
];

/// Placeholders that carry PHI: allowed only in steps that cannot be reached unverified.
pub fn placeholder_is_phi(name: &str, slot_types: &HashMap<String, SlotType>) -> bool {
    let (head, tail) = name.split_once('.').unwrap_or((name, ""));
    match head {
        "patient" | "appointment" => true,
        "slot" => slot_types.get(tail).is_some_and(|t| t.is_identifying()),
        _ => false,
    }
}

/// Placeholders a template may use besides `slot.NAME`.
pub const PLACEHOLDERS: &[&str] = &[
    "clinic.name",
    "clinic.hours",
    "clinic.address",
    "clinic.parking",
    "clinic.insurance",
    "clinic.records",
    "dialog.emergency_number",
    "dialog.crisis_number",
    "offer.when",
    "offer.provider",
    "appointment.when",
    "appointment.provider",
    "appointment.count",
    "patient.first_name",
];

// ----- file model (what serde reads, with positions) -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFlow {
    name: Spanned<String>,
    start: Spanned<String>,
    identify: Spanned<String>,
    #[serde(default)]
    on: HashMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    dtmf: HashMap<Spanned<String>, Spanned<String>>,
    steps: Vec<FileStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    id: Spanned<String>,
    say: Option<Spanned<String>>,
    reprompt: Option<Spanned<String>>,
    collect: Option<FileCollect>,
    action: Option<Spanned<String>>,
    #[serde(default)]
    on: HashMap<Spanned<String>, Spanned<String>>,
    next: Option<Spanned<String>>,
    #[serde(default)]
    dtmf: HashMap<Spanned<String>, Spanned<String>>,
    silence_ms: Option<Spanned<u32>>,
    #[serde(default)]
    requires_verified: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCollect {
    slot: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<SlotType>,
}

// ----- checked model -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    s.span()
        .start()
        .map_or(Pos { line: 1, column: 1 }, |m| Pos {
            line: m.line(),
            column: m.column(),
        })
}

/// A step of a checked flow. Targets are step indices.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub say: Option<String>,
    pub reprompt: Option<String>,
    pub collect: Option<(String, SlotType)>,
    pub action: Option<ActionKind>,
    pub on: BTreeMap<String, usize>,
    pub next: Option<usize>,
    pub dtmf: BTreeMap<char, usize>,
    pub silence_ms: Option<u32>,
    pub requires_verified: bool,
}

impl Step {
    /// The step waits for the caller (it asks something) rather than moving on by itself.
    pub fn waits(&self) -> bool {
        self.action.is_none() && (self.collect.is_some() || !self.on.is_empty())
    }
}

/// A checked flow.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub file: PathBuf,
    pub start: usize,
    pub identify: usize,
    /// Transitions that apply in every waiting step unless the step maps the label itself.
    pub on: BTreeMap<String, usize>,
    pub dtmf: BTreeMap<char, usize>,
    pub steps: Vec<Step>,
    pub slot_types: HashMap<String, SlotType>,
}

/// Where `{placeholder}`s are in a template, or an error for an unclosed brace.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "a `{` without a closing `}`".to_string())?;
        out.push(after[..close].trim());
        rest = &after[close + 1..];
    }
    Ok(out)
}

struct Checker<'a> {
    file: &'a Path,
    problems: Vec<FlowProblem>,
}

impl Checker<'_> {
    fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(FlowProblem {
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }
}

impl Flow {
    /// Reads and checks a flow file.
    pub fn load(path: &Path) -> Result<Flow, FlowError> {
        let text = std::fs::read_to_string(path).map_err(|source| FlowError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks flow text; `file` names it in problems.
    pub fn parse(text: &str, file: &Path) -> Result<Flow, FlowError> {
        let mut ck = Checker {
            file,
            problems: Vec::new(),
        };
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        let node = match marked_yaml::parse_yaml_with_options(0, text, options) {
            Ok(node) => node,
            Err(e) => {
                let (pos, msg) = load_error(&e);
                ck.at(pos, format!("YAML error: {msg}"));
                return Err(FlowError::Invalid(ck.problems));
            }
        };
        let raw: FileFlow = match marked_yaml::from_node(&node) {
            Ok(raw) => raw,
            Err(e) => {
                let unknown = match &*e {
                    marked_yaml::Error::UnknownFieldError(field, _, _) => Some(field.clone()),
                    _ => None,
                };
                let pos = e
                    .start_mark()
                    .or_else(|| unknown.and_then(|f| find_key(&node, &f)))
                    .map_or(Pos { line: 1, column: 1 }, |m| Pos {
                        line: m.line(),
                        column: m.column(),
                    });
                let msg = match e.path().map(str::to_string) {
                    Some(p) => format!("{p}: {}", e.into_inner()),
                    None => e.into_inner().to_string(),
                };
                ck.at(pos, msg);
                return Err(FlowError::Invalid(ck.problems));
            }
        };
        let flow = check(raw, file, &mut ck);
        ck.problems
            .sort_by_key(|p| (p.line, p.column, p.message.clone()));
        ck.problems.dedup();
        match flow {
            Some(flow) if ck.problems.is_empty() => Ok(flow),
            _ => Err(FlowError::Invalid(ck.problems)),
        }
    }

    pub fn step(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// Where a mapping key named `key` first occurs (serde's unknown-field errors carry no position).
fn find_key(node: &marked_yaml::Node, key: &str) -> Option<marked_yaml::Marker> {
    match node {
        marked_yaml::Node::Scalar(_) => None,
        marked_yaml::Node::Sequence(seq) => seq.iter().find_map(|n| find_key(n, key)),
        marked_yaml::Node::Mapping(map) => map.iter().find_map(|(k, v)| {
            if k.as_str() == key {
                k.span().start().copied()
            } else {
                find_key(v, key)
            }
        }),
    }
}

fn load_error(e: &marked_yaml::LoadError) -> (Pos, String) {
    use marked_yaml::LoadError as L;
    let mark = match e {
        L::TopLevelMustBeMapping(m)
        | L::TopLevelMustBeSequence(m)
        | L::UnexpectedAnchor(m)
        | L::MappingKeyMustBeScalar(m)
        | L::UnexpectedTag(m)
        | L::ScanError(m, _) => Some(*m),
        L::DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    let msg = match e {
        L::ScanError(_, s) => s.info().to_string(),
        L::DuplicateKey(inner) => format!("duplicate key `{}`", inner.key.as_str()),
        L::TopLevelMustBeMapping(_) => "the top level must be a mapping".into(),
        L::TopLevelMustBeSequence(_) => "the top level must be a sequence".into(),
        L::UnexpectedAnchor(_) => "anchors and aliases are not supported".into(),
        L::MappingKeyMustBeScalar(_) => "mapping keys must be plain strings".into(),
        L::UnexpectedTag(_) => "YAML tags are not supported".into(),
    };
    let pos = mark.map_or(Pos { line: 1, column: 1 }, |m| Pos {
        line: m.line(),
        column: m.column(),
    });
    (pos, msg)
}

type SpannedMap = HashMap<Spanned<String>, Spanned<String>>;

fn sorted(map: &SpannedMap) -> Vec<(&Spanned<String>, &Spanned<String>)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by_key(|(k, _)| {
        let p = pos_of(*k);
        (p.line, p.column)
    });
    v
}

fn check(raw: FileFlow, file: &Path, ck: &mut Checker) -> Option<Flow> {
    // ids
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, s) in raw.steps.iter().enumerate() {
        if s.id.is_empty() {
            ck.at(pos_of(&s.id), "step id must not be empty");
        }
        if let Some(prev) = index.insert(s.id.to_string(), i) {
            let p = pos_of(&raw.steps[prev].id);
            ck.at(
                pos_of(&s.id),
                format!(
                    "duplicate step id `{}` (first defined at line {})",
                    &*s.id, p.line
                ),
            );
        }
    }
    let resolve = |ck: &mut Checker, target: &Spanned<String>| -> Option<usize> {
        match index.get(target.as_str()) {
            Some(i) => Some(*i),
            None => {
                ck.at(pos_of(target), format!("unknown step `{}`", &**target));
                None
            }
        }
    };
    let start = resolve(ck, &raw.start);
    let identify = resolve(ck, &raw.identify);
    let mut global_on = BTreeMap::new();
    for (label, target) in sorted(&raw.on) {
        if !INTENTS.contains(&label.as_str()) || label.as_str() == "collected" {
            ck.at(
                pos_of(label),
                format!(
                    "unknown intent `{}` in the flow's `on` (one of: {})",
                    &**label,
                    INTENTS.join(", ")
                ),
            );
        }
        if let Some(t) = resolve(ck, target) {
            global_on.insert(label.to_string(), t);
        }
    }
    let global_dtmf = check_dtmf(ck, &raw.dtmf, &resolve);

    // slot types first: a slot collected anywhere has one type everywhere
    let mut slot_types: HashMap<String, SlotType> = HashMap::new();
    for s in &raw.steps {
        if let Some(c) = &s.collect
            && let Some(prev) = slot_types.insert(c.slot.to_string(), *c.kind)
            && prev != *c.kind
        {
            ck.at(
                pos_of(&c.kind),
                format!("slot `{}` is collected with two different types", &*c.slot),
            );
        }
    }

    let mut steps = Vec::new();
    for s in &raw.steps {
        let action = s.action.as_ref().and_then(|a| {
            let parsed = ActionKind::parse(a);
            if parsed.is_none() {
                ck.at(
                    pos_of(a),
                    format!(
                        "unknown action `{}` (one of: {})",
                        &**a,
                        ActionKind::ALL.map(|(n, _)| n).join(", ")
                    ),
                );
            }
            parsed
        });
        let mut on = BTreeMap::new();
        for (label, target) in sorted(&s.on) {
            let allowed: Vec<&str> = match action {
                Some(a) => a.outcomes().to_vec(),
                None => INTENTS.to_vec(),
            };
            if !allowed.contains(&label.as_str()) {
                let what = match action {
                    Some(a) => format!("outcome of `{}`", a.name()),
                    None => "intent".to_string(),
                };
                ck.at(
                    pos_of(label),
                    format!(
                        "unknown {what} `{}` (one of: {})",
                        &**label,
                        allowed.join(", ")
                    ),
                );
            }
            if let Some(t) = resolve(ck, target) {
                on.insert(label.to_string(), t);
            }
        }
        let next = s.next.as_ref().and_then(|n| resolve(ck, n));
        let dtmf = check_dtmf(ck, &s.dtmf, &resolve);
        if s.say.is_none() && (s.collect.is_some() || (action.is_none() && !s.on.is_empty())) {
            ck.at(
                pos_of(&s.id),
                format!(
                    "step `{}` asks the caller something but has no prompt (`say`)",
                    &*s.id
                ),
            );
        }
        if s.collect.is_some() && s.action.is_some() {
            ck.at(
                pos_of(&s.id),
                format!(
                    "step `{}` both collects a slot and runs an action: split it in two",
                    &*s.id
                ),
            );
        }
        if let Some(a) = action
            && a.is_terminal()
            && (!s.on.is_empty() || s.next.is_some())
        {
            ck.at(
                pos_of(&s.id),
                format!(
                    "step `{}` ends the call (`{}`): it cannot have `on` or `next`",
                    &*s.id,
                    a.name()
                ),
            );
        }
        if action.is_none_or(|a| !a.is_terminal())
            && s.next.is_none()
            && s.on.is_empty()
            && s.collect.is_none()
        {
            ck.at(
                pos_of(&s.id),
                format!(
                    "step `{}` leads nowhere: give it `next`, `on`, or an ending action",
                    &*s.id
                ),
            );
        }
        if let Some(c) = &s.collect
            && *c.kind != SlotType::YesNo
            && s.next.is_none()
            && !s.on.contains_key("collected")
        {
            ck.at(
                pos_of(&c.slot),
                format!("step `{}` collects `{}` but says nowhere to go next (`next` or `on: collected`)", &*s.id, &*c.slot),
            );
        }
        if let Some(c) = &s.collect
            && *c.kind == SlotType::YesNo
            && !(s.on.contains_key("yes") && s.on.contains_key("no"))
        {
            ck.at(
                pos_of(&c.slot),
                format!(
                    "step `{}` asks yes or no: map both `yes` and `no` in `on`",
                    &*s.id
                ),
            );
        }
        for template in [&s.say, &s.reprompt].into_iter().flatten() {
            match placeholders(template) {
                Err(msg) => ck.at(pos_of(template), msg),
                Ok(names) => {
                    for n in names {
                        let known = PLACEHOLDERS.contains(&n)
                            || n.strip_prefix("slot.")
                                .is_some_and(|slot| slot_types.contains_key(slot));
                        if !known {
                            ck.at(pos_of(template), format!("unknown placeholder `{{{n}}}`"));
                        }
                    }
                }
            }
        }
        steps.push(Step {
            id: s.id.to_string(),
            say: s.say.as_ref().map(|t| t.to_string()),
            reprompt: s.reprompt.as_ref().map(|t| t.to_string()),
            collect: s.collect.as_ref().map(|c| (c.slot.to_string(), *c.kind)),
            action,
            on,
            next,
            dtmf,
            silence_ms: s.silence_ms.as_ref().map(|v| **v),
            requires_verified: s.requires_verified.as_ref().is_some_and(|v| **v),
        });
    }
    let (start, identify) = (start?, identify?);
    let flow = Flow {
        name: raw.name.to_string(),
        file: file.to_path_buf(),
        start,
        identify,
        on: global_on,
        dtmf: global_dtmf,
        steps,
        slot_types,
    };
    if !ck.problems.is_empty() {
        return None;
    }
    check_graph(&flow, &raw, ck);
    Some(flow)
}

fn check_dtmf(
    ck: &mut Checker,
    map: &HashMap<Spanned<String>, Spanned<String>>,
    resolve: &dyn Fn(&mut Checker, &Spanned<String>) -> Option<usize>,
) -> BTreeMap<char, usize> {
    let mut out = BTreeMap::new();
    for (key, target) in sorted(map) {
        let mut chars = key.chars();
        let digit = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
            _ => {
                ck.at(
                    pos_of(key),
                    format!("DTMF key `{}` must be one of 0-9, * or #", &**key),
                );
                None
            }
        };
        if let (Some(d), Some(t)) = (digit, resolve(ck, target)) {
            out.insert(d, t);
        }
    }
    out
}

impl Flow {
    /// Every transition out of a step: (label, target). `resume` edges of the identity check go
    /// to every gated step; entering a gated step unverified goes to `identify`.
    pub fn edges(&self, i: usize) -> Vec<(String, usize)> {
        let s = &self.steps[i];
        let mut out: Vec<(String, usize)> = s.on.iter().map(|(l, t)| (l.clone(), *t)).collect();
        if let Some(n) = s.next {
            out.push(("next".into(), n));
        }
        for (d, t) in &s.dtmf {
            out.push((format!("dtmf {d}"), *t));
        }
        if s.waits() {
            for (l, t) in &self.on {
                if !s.on.contains_key(l) {
                    out.push((l.clone(), *t));
                }
            }
            for (d, t) in &self.dtmf {
                if !s.dtmf.contains_key(d) {
                    out.push((format!("dtmf {d}"), *t));
                }
            }
        }
        if s.action == Some(ActionKind::VerifyIdentity) && !s.on.contains_key("verified") {
            for (g, step) in self.steps.iter().enumerate() {
                if step.requires_verified {
                    out.push(("verified".into(), g));
                }
            }
        }
        out
    }
}

#[allow(clippy::needless_range_loop)] // several parallel per-step vectors
fn check_graph(flow: &Flow, raw: &FileFlow, ck: &mut Checker) {
    let n = flow.steps.len();
    let id_pos = |i: usize| pos_of(&raw.steps[i].id);
    // reachable at all
    let mut seen = vec![false; n];
    let mut queue = VecDeque::from([flow.start]);
    seen[flow.start] = true;
    while let Some(i) = queue.pop_front() {
        let mut targets: Vec<usize> = flow.edges(i).into_iter().map(|(_, t)| t).collect();
        if flow.steps[i].requires_verified {
            targets.push(flow.identify);
        }
        for t in targets {
            if !seen[t] {
                seen[t] = true;
                queue.push_back(t);
            }
        }
    }
    for i in 0..n {
        if !seen[i] {
            ck.at(
                id_pos(i),
                format!("unreachable step `{}`", flow.steps[i].id),
            );
        }
    }
    // reachable before verification: do not follow `verified` edges, do not enter gated steps
    let mut unverified = vec![false; n];
    let mut queue = VecDeque::from([flow.start]);
    unverified[flow.start] = !flow.steps[flow.start].requires_verified;
    while let Some(i) = queue.pop_front() {
        for (label, t) in flow.edges(i) {
            let t = if flow.steps[t].requires_verified {
                flow.identify
            } else {
                t
            };
            if flow.steps[i].action == Some(ActionKind::VerifyIdentity) && label == "verified" {
                continue;
            }
            if !unverified[t] {
                unverified[t] = true;
                queue.push_back(t);
            }
        }
    }
    for i in 0..n {
        if !unverified[i] {
            continue;
        }
        let s = &raw.steps[i];
        for template in [&s.say, &s.reprompt].into_iter().flatten() {
            for p in placeholders(template).unwrap_or_default() {
                if placeholder_is_phi(p, &flow.slot_types) {
                    ck.at(
                        pos_of(template),
                        format!(
                            "PHI placeholder `{{{p}}}` in step `{}`, which a caller can reach before verification (mark it `requires_verified: true` or move it after verify_identity)",
                            s.id.as_str()
                        ),
                    );
                }
            }
        }
        if let Some(a) = flow.steps[i].action
            && matches!(
                a,
                ActionKind::ListAppointments
                    | ActionKind::Book
                    | ActionKind::Cancel
                    | ActionKind::Reschedule
            )
        {
            ck.at(
                id_pos(i),
                format!(
                    "step `{}` runs `{}` on a patient's record but can be reached before verification",
                    flow.steps[i].id,
                    a.name()
                ),
            );
        }
    }
    // must-collected slots (forward dataflow; intersection over predecessors)
    let all: BTreeSet<String> = flow
        .slot_types
        .keys()
        .cloned()
        .chain(["appointment", "offer"].map(String::from))
        .collect();
    let mut input: Vec<Option<BTreeSet<String>>> = vec![None; n];
    input[flow.start] = Some(BTreeSet::new());
    let mut work = VecDeque::from([flow.start]);
    let mut rounds = 0;
    while let Some(i) = work.pop_front() {
        rounds += 1;
        if rounds > 100_000 {
            break;
        }
        let mut out = input[i].clone().unwrap_or_else(|| all.clone());
        if let Some((slot, _)) = &flow.steps[i].collect {
            out.insert(slot.clone());
        }
        if let Some(a) = flow.steps[i].action {
            out.extend(a.produces().iter().map(|s| s.to_string()));
        }
        let mut targets: Vec<usize> = flow.edges(i).into_iter().map(|(_, t)| t).collect();
        if flow.steps[i].requires_verified {
            targets.push(flow.identify);
        }
        for t in targets {
            let merged = match &input[t] {
                None => out.clone(),
                Some(prev) => prev.intersection(&out).cloned().collect(),
            };
            if input[t].as_ref() != Some(&merged) {
                input[t] = Some(merged);
                work.push_back(t);
            }
        }
    }
    for i in 0..n {
        let Some(have) = &input[i] else { continue };
        let s = &raw.steps[i];
        let mut have = have.clone();
        if let Some((slot, _)) = &flow.steps[i].collect {
            // a step's own reprompt may not use its slot either; its `say` is before collecting
            have.remove(slot);
        }
        for template in [&s.say, &s.reprompt].into_iter().flatten() {
            for p in placeholders(template).unwrap_or_default() {
                let needed = p.strip_prefix("slot.").or_else(|| {
                    p.split_once('.')
                        .map(|(h, _)| h)
                        .filter(|h| *h == "offer" || *h == "appointment")
                });
                if let Some(slot) = needed
                    && !have.contains(slot)
                {
                    ck.at(
                        pos_of(template),
                        format!(
                            "`{{{p}}}` used in step `{}` before `{slot}` is collected on every path to it",
                            s.id.as_str()
                        ),
                    );
                }
            }
        }
        if let Some(a) = flow.steps[i].action {
            for need in a.needs() {
                if !have.contains(*need) {
                    ck.at(
                        id_pos(i),
                        format!(
                            "step `{}` runs `{}`, which needs `{need}`, before `{need}` is collected on every path to it",
                            s.id.as_str(),
                            a.name()
                        ),
                    );
                }
            }
        }
    }
    // every reachable step must be able to end the call; steps that move on by themselves must
    // not loop without asking anything
    let mut can_end = vec![false; n];
    for (i, s) in flow.steps.iter().enumerate() {
        if s.action.is_some_and(ActionKind::is_terminal) {
            can_end[i] = true;
        }
    }
    // waiting steps can always end: retries run out and the call goes to staff
    for (i, s) in flow.steps.iter().enumerate() {
        if s.waits() {
            can_end[i] = true;
        }
    }
    loop {
        let mut changed = false;
        for i in 0..n {
            if !can_end[i] {
                let mut targets: Vec<usize> = flow.edges(i).into_iter().map(|(_, t)| t).collect();
                if flow.steps[i].requires_verified {
                    targets.push(flow.identify);
                }
                if targets.iter().any(|t| can_end[*t]) {
                    can_end[i] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for i in 0..n {
        if seen[i] && !can_end[i] {
            ck.at(
                id_pos(i),
                format!(
                    "step `{}` is in a cycle without exit: it never asks the caller anything and never reaches an ending step",
                    flow.steps[i].id
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
