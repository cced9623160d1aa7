//! The conformance cases of the AWSTOE spec digest (§7), run through the real binary on
//! real documents. Each test names the behaviour it pins.

mod common;

use std::time::{Duration, Instant};

use common::{Toe, build_doc, read};

const A_FAILS_B_ECHOES: &str = "- name: A\n  action: ExecuteBash\n  {ONFAIL}inputs:\n    commands: ['exit 1']\n- name: B\n  action: ExecuteBash\n  inputs:\n    commands: ['echo b']\n";

fn on_failure_doc(on_failure: &str) -> String {
    let line = if on_failure.is_empty() { String::new() } else { format!("onFailure: {on_failure}\n  ") };
    build_doc(&A_FAILS_B_ECHOES.replace("{ONFAIL}", &line))
}

#[test]
fn abort_is_the_default_and_stops_at_the_failed_step() {
    let t = Toe::new();
    t.write("d.yml", &on_failure_doc(""));
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "failed");
    assert_eq!(r.count("executedStepCount"), 1);
    assert_eq!(r.count("failedStepCount"), 1);
    assert_eq!(r.step_status("build", "A"), "failed");
    assert!(!r.has_step("build", "B"), "B must never run");
    assert_eq!(r.detail.as_ref().unwrap()["documents"][0]["phases"][0]["status"], "failed");
}

#[test]
fn continue_runs_the_next_step_but_the_run_still_fails() {
    let t = Toe::new();
    t.write("d.yml", &on_failure_doc("Continue"));
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "failed");
    assert_eq!(r.step_status("build", "B"), "success");
    assert_eq!(r.output("build", "B", "stdout"), "b");
}

#[test]
fn ignore_counts_as_success_with_ignored_failure() {
    let t = Toe::new();
    t.write("d.yml", &on_failure_doc("Ignore"));
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.status(), "successWithIgnoredFailure");
    assert_eq!(r.step_status("build", "A"), "ignoredFailure");
    assert_eq!(r.step_status("build", "B"), "success");
    assert_eq!(r.count("ignoredFailedStepCount"), 1);
    assert_eq!(r.count("failedStepCount"), 0);
}

fn flaky(max_attempts: Option<u32>) -> String {
    let attempts = max_attempts.map(|m| format!("maxAttempts: {m}\n  ")).unwrap_or_default();
    build_doc(&format!(
        "- name: Flaky\n  action: ExecuteBash\n  {attempts}inputs:\n    commands:\n      - |\n        n=$(( $(cat \"$TMPDIR/count\" 2>/dev/null || echo 0) + 1 ))\n        echo $n > \"$TMPDIR/count\"\n        [ $n -ge 3 ]\n"
    ))
}

#[test]
fn max_attempts_counts_every_attempt() {
    for (max, ok, runs) in [(Some(3), true, "3"), (Some(2), false, "2"), (None, false, "1")] {
        let t = Toe::new();
        t.write("d.yml", &flaky(max));
        let r = t.run(&["d.yml"], &[]);
        assert_eq!(r.code == 0, ok, "maxAttempts {max:?}: {}", r.stderr);
        assert_eq!(read(&t.path("count")).trim(), runs, "maxAttempts {max:?}");
        assert_eq!(r.step("build", "Flaky")["attempts"], runs.parse::<u64>().unwrap());
    }
}

#[test]
fn a_timeout_fails_the_attempt_and_each_retry_gets_its_own() {
    let t = Toe::new();
    t.write(
        "d.yml",
        &build_doc("- name: Slow\n  action: ExecuteBash\n  timeoutSeconds: 1\n  inputs:\n    commands: ['sleep 10']\n"),
    );
    let start = Instant::now();
    let r = t.run(&["d.yml"], &[]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert_eq!(r.code, 1);
    assert!(r.step("build", "Slow")["failureMessage"].as_str().unwrap().contains("timed out"));

    t.write("d2.yml", &build_doc("- name: Slow\n  action: ExecuteBash\n  timeoutSeconds: 1\n  maxAttempts: 2\n  inputs:\n    commands: ['echo x >> \"$TMPDIR/tries\"; sleep 10']\n"));
    let start = Instant::now();
    let r = t.run(&["d2.yml"], &[]);
    let took = start.elapsed();
    assert_eq!(r.code, 1);
    assert_eq!(read(&t.path("tries")).lines().count(), 2);
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "two attempts of 1 s each took {took:?}");

    t.write("d3.yml", &build_doc("- name: NoLimit\n  action: ExecuteBash\n  timeoutSeconds: -1\n  inputs:\n    commands: ['sleep 1.2; echo done']\n"));
    let r = t.run(&["d3.yml"], &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.output("build", "NoLimit", "stdout"), "done");
}

#[test]
fn zero_and_negative_timeouts_are_validation_errors() {
    let t = Toe::new();
    for v in ["0", "-5"] {
        t.write(
            "d.yml",
            &build_doc(&format!(
                "- name: S\n  action: ExecuteBash\n  timeoutSeconds: {v}\n  inputs:\n    commands: ['true']\n"
            )),
        );
        assert_eq!(t.error_codes("d.yml"), vec!["bad-timeout"], "timeoutSeconds {v}");
    }
}

#[test]
fn execute_bash_success_is_the_scripts_final_status() {
    let t = Toe::new();
    t.write(
        "d.yml",
        &build_doc(
            "- name: FalseThenOk\n  action: ExecuteBash\n  inputs:\n    commands: ['false', 'echo ok']\n\
             - name: Block\n  action: ExecuteBash\n  inputs:\n    commands:\n      - |\n        x=1\n        if [ $x = 1 ]; then\n          echo one\n        fi\n\
             - name: Hi\n  action: ExecuteBash\n  inputs:\n    commands: ['echo hi']\n\
             - name: Three\n  action: ExecuteBash\n  inputs:\n    commands: ['exit 3']\n",
        ),
    );
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.step_status("build", "FalseThenOk"), "success");
    assert_eq!(r.output("build", "Block", "stdout"), "one");
    assert_eq!(r.output("build", "Hi", "stdout"), "hi", "stdout loses its trailing newline");
    assert_eq!(r.step_status("build", "Three"), "failed");
    assert!(r.step("build", "Three")["failureMessage"].as_str().unwrap().contains("exit status 3"));
}

#[test]
fn outputs_and_indexed_inputs_chain_across_phases() {
    let t = Toe::new();
    t.write(
        "d.yml",
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Ver\n        action: ExecuteBash\n        inputs:\n          commands: ['echo 2.1.1']\n      - name: Files\n        action: CreateFile\n        inputs:\n          - path: ./one.txt\n            content: first\n          - path: ./two.txt\n            content: second\n  - name: validate\n    steps:\n      - name: CheckVer\n        action: Assert\n        inputs:\n          stringEquals: '2.1.1'\n          value: '{{ build.Ver.outputs.stdout }}'\n      - name: ReadSecond\n        action: ReadFile\n        inputs:\n          - path: '{{ build.Files.inputs[1].path }}'\n",
    );
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.step_status("validate", "CheckVer"), "success");
    assert_eq!(r.output("validate", "ReadSecond", "content"), "second");
}

#[test]
fn for_each_consolidates_outputs_and_named_loops_resolve() {
    let t = Toe::new();
    t.write(
        "d.yml",
        &build_doc(
            "- name: Each\n  action: ExecuteBash\n  loop:\n    forEach: [a, b, c]\n  inputs:\n    commands: ['echo {{ loop.index }}-{{ loop.value }}']\n\
             - name: Next\n  action: ExecuteBash\n  inputs:\n    commands: ['echo \"{{ build.Each.outputs.stdout }}\" | wc -l']\n\
             - name: Named\n  action: ExecuteBash\n  loop:\n    name: L\n    forEach: [a, b, c]\n  inputs:\n    commands: ['echo {{ L.index }}-{{ L.value }}']\n",
        ),
    );
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.output("build", "Each", "stdout"), "0-a\n1-b\n2-c");
    assert_eq!(r.output("build", "Next", "stdout").trim(), "3");
    assert_eq!(r.output("build", "Named", "stdout"), "0-a\n1-b\n2-c");
}

#[test]
fn for_each_over_a_delimited_string_and_its_delimiter_rules() {
    let t = Toe::new();
    let doc = |delim: &str| {
        format!(
            "schemaVersion: 1.0\nparameters:\n  - Hosts:\n      type: string\n      default: x,y\nphases:\n  - name: build\n    steps:\n      - name: Each\n        action: ExecuteBash\n        loop:\n          forEach:\n            list: '{{{{ Hosts }}}}'\n{delim}        inputs:\n          commands: ['echo {{{{ loop.value }}}}']\n"
        )
    };
    t.write("d.yml", &doc(""));
    assert_eq!(t.run(&["d.yml"], &[]).output("build", "Each", "stdout"), "x\ny");
    assert_eq!(t.run(&["d.yml"], &["--parameters", "Hosts=x"]).output("build", "Each", "stdout"), "x");
    t.write("semi.yml", &doc("            delimiter: ';'\n").replace("default: x,y", "default: p;q;r"));
    assert_eq!(t.run(&["semi.yml"], &[]).output("build", "Each", "stdout"), "p\nq\nr");
    t.write("pipe.yml", &doc("            delimiter: '|'\n"));
    assert_eq!(t.error_codes("pipe.yml"), vec!["bad-delimiter"]);
    t.write("two.yml", &doc("            delimiter: ',,'\n"));
    assert_eq!(t.error_codes("two.yml"), vec!["bad-delimiter"]);
}

#[test]
fn for_loops_include_both_ends_and_refuse_endless_bounds() {
    let t = Toe::new();
    let doc = |s: &str, e: &str, u: &str| {
        build_doc(&format!(
            "- name: F\n  action: ExecuteBash\n  loop:\n    for:\n      start: {s}\n      end: {e}\n      updateBy: {u}\n  inputs:\n    commands: ['echo {{{{ loop.index }}}}:{{{{ loop.value }}}}']\n"
        ))
    };
    t.write("up.yml", &doc("1", "5", "2"));
    assert_eq!(t.run(&["up.yml"], &[]).output("build", "F", "stdout"), "0:1\n1:3\n2:5");
    t.write("down.yml", &doc("5", "1", "-2"));
    assert_eq!(t.run(&["down.yml"], &[]).output("build", "F", "stdout"), "0:5\n1:3\n2:1");
    for (s, e, u) in [("5", "1", "1"), ("1", "5", "0")] {
        t.write("bad.yml", &doc(s, e, u));
        assert_eq!(t.error_codes("bad.yml"), vec!["infinite-loop"], "{s} {e} {u}");
    }
    t.write("chain.yml", &doc("'{{ build.X.outputs.stdout }}'", "5", "1"));
    assert_eq!(t.error_codes("chain.yml"), vec!["chaining-not-allowed"]);
}

#[test]
fn a_failing_loop_retries_from_the_first_iteration() {
    let t = Toe::new();
    let body = "- name: L\n  action: ExecuteBash\n  maxAttempts: 2\n  loop:\n    forEach: [a, b, c]\n  inputs:\n    commands:\n      - |\n        if [ {{ loop.index }} = 1 ] && [ ! -e \"$TMPDIR/failed-once\" ]; then\n          touch \"$TMPDIR/failed-once\"; exit 1\n        fi\n        echo {{ loop.index }} >> \"$TMPDIR/seen\"\n        echo {{ loop.value }}\n";
    t.write("d.yml", &build_doc(body));
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.output("build", "L", "stdout"), "a\nb\nc", "the failed attempt contributes nothing");
    assert_eq!(read(&t.path("seen")), "0\n0\n1\n2\n", "the second attempt restarted at index 0");

    let always = body.replace("&& [ ! -e \"$TMPDIR/failed-once\" ]", "");
    t.write("e.yml", &build_doc(&always));
    let r = t.run(&["e.yml"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.step("build", "L")["failureMessage"].as_str().unwrap().contains("[1]"), "{}", r.step("build", "L"));
}

#[test]
fn if_conditions_skip_run_or_abort_steps() {
    let t = Toe::new();
    t.write("present", "x");
    t.write(
        "d.yml",
        &build_doc(
            "- name: Skipped\n  action: ExecuteBash\n  if:\n    fileExists: ./present\n    then: Skip\n  inputs:\n    commands: ['echo should-not-run']\n\
             - name: Runs\n  action: ExecuteBash\n  if:\n    not:\n      binaryExists: definitely-not-a-binary\n  inputs:\n    commands: ['echo ran']\n\
             - name: OrShortCircuit\n  action: ExecuteBash\n  if:\n    or:\n      - folderExists: .\n      - numberGreaterThan: 1\n        value: 'a10'\n  inputs:\n    commands: ['echo or']\n\
             - name: AbortedByIf\n  action: ExecuteBash\n  onFailure: Continue\n  if:\n    stringEquals: a\n    value: A\n    then: Abort\n  inputs:\n    commands: ['echo never']\n",
        ),
    );
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.step_status("build", "Skipped"), "skipped");
    assert_eq!(r.step("build", "Skipped")["outputs"], "[]");
    assert_eq!(r.output("build", "Runs", "stdout"), "ran");
    assert_eq!(r.output("build", "OrShortCircuit", "stdout"), "or");
    assert_eq!(r.step_status("build", "AbortedByIf"), "failed");
    assert_eq!(r.status(), "failed", "Continue still fails the run");
    assert_eq!(r.count("executedStepCount"), 3, "a skipped step is not executed");
}

#[test]
fn logical_nesting_deeper_than_four_is_invalid() {
    let t = Toe::new();
    let five = "- name: Deep\n  action: ExecuteBash\n  if:\n    not:\n      not:\n        not:\n          not:\n            not:\n              fileExists: /x\n  inputs:\n    commands: ['true']\n";
    t.write("five.yml", &build_doc(five));
    assert!(t.error_codes("five.yml").contains(&"nesting-too-deep".to_string()));
    let four = five.replace("            not:\n              fileExists", "            fileExists");
    t.write("four.yml", &build_doc(&four));
    assert!(t.error_codes("four.yml").is_empty());
}

#[test]
fn comparisons_follow_the_documented_examples() {
    let t = Toe::new();
    let mut steps = String::new();
    for (i, (op, base, value)) in [
        ("numberLessThan", "2", "1"),
        ("numberEquals", "1", "'1.0'"),
        ("stringEquals", "'Abc'", "'aBC'"),
        ("numberLessThanEquals", "2", "'2'"),
        ("patternMatches", "'^[a-z]+$'", "'ThisIsValue'"),
        ("stringLessThan", "'a'", "'0'"),
    ]
    .iter()
    .enumerate()
    {
        steps.push_str(&format!("- name: T{i}\n  action: Assert\n  inputs:\n    {op}: {base}\n    value: {value}\n"));
    }
    for (i, cond) in [
        "numberGreaterThan: 1\n    value: 'abc'",
        "stringIsEmpty: ' '",
        "stringIsWhitespace: ''",
        "numberGreaterThan: 1\n    value: '1'",
    ]
    .iter()
    .enumerate()
    {
        steps.push_str(&format!("- name: F{i}\n  action: Assert\n  onFailure: Ignore\n  inputs:\n    {cond}\n"));
    }
    t.write("d.yml", &build_doc(&steps));
    let r = t.run(&["d.yml"], &[]);
    for i in 0..6 {
        assert_eq!(r.step_status("build", &format!("T{i}")), "success", "T{i}: {}", r.step("build", &format!("T{i}")));
    }
    for i in 0..4 {
        assert_eq!(r.step_status("build", &format!("F{i}")), "ignoredFailure", "F{i} must be false");
    }
    t.write("re.yml", &build_doc("- name: R\n  action: Assert\n  inputs:\n    patternMatches: '(['\n    value: x\n"));
    assert_eq!(t.error_codes("re.yml"), vec!["bad-regex"]);
}

#[test]
fn parameters_defaults_overrides_and_cli_rules() {
    let t = Toe::new();
    let doc = "schemaVersion: 1.0\nparameters:\n  - Pet:\n      type: string\n      default: cat\nconstants:\n  - Home:\n      type: string\n      value: house\nphases:\n  - name: build\n    steps:\n      - name: Say\n        action: ExecuteBash\n        inputs:\n          commands:\n            - 'echo {{ Pet }} in {{ Home }} {{ loop.value }}'\n";
    t.write("d.yml", doc);
    assert_eq!(t.run(&["d.yml"], &[]).output("build", "Say", "stdout"), "cat in house {{ loop.value }}");
    assert_eq!(
        t.run(&["d.yml"], &["--parameters", "Pet=dog"]).output("build", "Say", "stdout"),
        "dog in house {{ loop.value }}"
    );
    let r = t.run(&["d.yml"], &["--parameters", "Nope=1"]);
    assert_eq!(r.code, 0);
    let r = t.run(&["d.yml"], &["--parameters", "Pet="]);
    assert_eq!(r.code, 2, "an empty value is a usage error");
    assert!(r.stderr.contains("name=value"));

    t.write("short.yml", &doc.replace("Pet", "ab"));
    assert_eq!(t.error_codes("short.yml"), vec!["bad-name"]);
    t.write("clash.yml", &doc.replace("Home", "Pet").replace("{{ Pet }} in {{ Pet }}", "{{ Pet }}"));
    assert_eq!(t.error_codes("clash.yml"), vec!["duplicate-name"]);
    t.write("unquoted.yml", &doc.replace("'echo {{ Pet }} in {{ Home }} {{ loop.value }}'", "{{ Pet }}"));
    assert_eq!(t.error_codes("unquoted.yml"), vec!["unquoted-expression"]);
    t.write("required.yml", &doc.replace("      default: cat\n", ""));
    let r = t.run(&["required.yml"], &[]);
    assert_eq!(r.code, 2, "a parameter without default or value stops the run before any step");
    assert!(r.stderr.contains("--parameters Pet=VALUE"), "{}", r.stderr);
}

#[test]
fn invalid_documents_are_rejected_and_run_nothing() {
    let t = Toe::new();
    let marker_step = "      - name: Marker\n        action: ExecuteBash\n        inputs:\n          commands: ['touch \"$TMPDIR/ran\"']\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("no-schema", format!("phases:\n  - name: build\n    steps:\n{marker_step}"), "missing-field"),
        (
            "schema-2",
            format!("schemaVersion: 2.0\nphases:\n  - name: build\n    steps:\n{marker_step}"),
            "bad-schema-version",
        ),
        ("no-phases", "schemaVersion: 1.0\n".into(), "missing-field"),
        (
            "odd-phase",
            format!("schemaVersion: 1.0\nphases:\n  - name: verify\n    steps:\n{marker_step}"),
            "no-standard-phase",
        ),
        (
            "dup-phase",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}  - name: build\n    steps:\n{marker_step}"
            ),
            "duplicate-phase",
        ),
        (
            "dup-step",
            format!("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}{marker_step}"),
            "duplicate-step",
        ),
        (
            "unknown-action",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: ExecuteBashh\n"
            ),
            "unknown-action",
        ),
        (
            "retry",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: ExecuteBash\n        onFailure: Retry\n        inputs:\n          commands: ['true']\n"
            ),
            "bad-on-failure",
        ),
        (
            "doc-attempts",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: ExecuteDocument\n        maxAttempts: 2\n        inputs:\n          document: other.yml\n"
            ),
            "execute-document-override",
        ),
        (
            "doc-timeout",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: ExecuteDocument\n        timeoutSeconds: 60\n        inputs:\n          document: other.yml\n"
            ),
            "execute-document-override",
        ),
        (
            "powershell",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: ExecutePowerShell\n        inputs:\n          commands: ['dir']\n"
            ),
            "windows-only-action",
        ),
        (
            "registry",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: SetRegistry\n        inputs:\n          - path: HKLM\\x\n            name: a\n            value: b\n            type: SZ\n"
            ),
            "windows-only-action",
        ),
        (
            "imds-iam",
            format!(
                "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}      - name: X\n        action: ExecuteBash\n        inputs:\n          commands: ['echo {{{{ aws:imds:iam/security-credentials/role }}}}']\n"
            ),
            "forbidden-imds-path",
        ),
    ];
    for (name, text, code) in cases {
        let file = format!("{name}.yml");
        t.write(&file, &text);
        let codes = t.error_codes(&file);
        assert!(codes.contains(&code.to_string()), "{name}: expected {code}, got {codes:?}");
        let r = t.run(&[&file], &[]);
        assert_eq!(r.code, 2, "{name}: run must refuse an invalid document");
        assert!(!t.path("ran").exists(), "{name}: a step ran from an invalid document");
    }
    // The same step name in two phases is fine.
    t.write("ok.yml", &format!("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{marker_step}  - name: test\n    steps:\n{marker_step}"));
    assert!(t.error_codes("ok.yml").is_empty());
}

#[test]
fn validate_reports_every_error_with_its_position_and_a_hint() {
    let t = Toe::new();
    t.write(
        "many.yml",
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n        timeoutSeconds: 0\n        inputs:\n          commands: ['echo {{ Missing }}']\n      - name: B\n        action: CreateFile\n        colour: blue\n        inputs:\n          - path: /tmp/x\n            permissions: '0999'\n",
    );
    let out = t.validate(&["many.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diags = v["diagnostics"].as_array().unwrap();
    let find = |code: &str| diags.iter().find(|d| d["code"] == code).unwrap_or_else(|| panic!("no {code} in {v:#}"));
    assert_eq!(find("bad-timeout")["line"], 7);
    assert_eq!(find("bad-timeout")["column"], 25);
    assert_eq!(find("unknown-reference")["line"], 9);
    assert_eq!(find("unknown-key")["line"], 12);
    assert_eq!(find("bad-permissions")["line"], 15);
    assert!(diags.iter().all(|d| !d["hint"].as_str().unwrap().is_empty()), "every diagnostic has a hint");

    let human = common::amictl().args(["toe", "validate", "--documents"]).arg(t.path("many.yml")).output().unwrap();
    let text = String::from_utf8_lossy(&human.stderr);
    assert!(text.contains("many.yml:7:25: error[bad-timeout]"), "{text}");
    assert!(text.contains("3 error(s), 1 warning(s)"), "an unknown key is a warning: {text}");
    let strict =
        common::amictl().args(["toe", "validate", "--strict", "--documents"]).arg(t.path("many.yml")).output().unwrap();
    let text = String::from_utf8_lossy(&strict.stderr);
    assert!(text.contains("many.yml:12:9: error[unknown-key]") && text.contains("4 error(s)"), "{text}");
}

#[test]
fn unreadable_and_malformed_documents_are_clear_errors() {
    let t = Toe::new();
    let missing = common::amictl().args(["toe", "validate", "--documents", "/nonexistent/doc.yml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("unreadable-document"));
    t.write("broken.yml", "schemaVersion: 1.0\nphases: [\n  - name: build\n");
    assert_eq!(t.error_codes("broken.yml"), vec!["yaml-syntax"]);
    std::fs::write(t.path("binary.yml"), b"schemaVersion: 1.0\n\xff\xfe\n").unwrap();
    assert_eq!(t.error_codes("binary.yml"), vec!["not-utf8"]);
    t.write("list.yml", "- a\n- b\n");
    assert_eq!(t.error_codes("list.yml"), vec!["wrong-type"]);
    let empty = common::amictl().args(["toe", "validate", "--documents", ""]).output().unwrap();
    assert_eq!(empty.status.code(), Some(2), "an empty document list is a usage error");
}
