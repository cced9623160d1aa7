//! Property tests: the loader and the expression evaluator never panic, whatever the input.

use proptest::prelude::*;
use toe::Document;

/// Fragments that steer random documents into the deeper validation paths.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("schemaVersion: 1.0\n".to_string()),
        Just("phases:\n".to_string()),
        Just("  - name: build\n    steps:\n".to_string()),
        Just("      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: ['echo {{ X }}']\n".to_string()),
        Just("        loop:\n          for: {start: 1, end: -3, updateBy: 0}\n".to_string()),
        Just("        if:\n          and: [{not: {fileExists: /x}}, {numberEquals: 1, value: '{{ build.S.outputs.stdout }}'}]\n".to_string()),
        Just("        loop:\n          forEach: {list: '{{ P }}', delimiter: ';'}\n".to_string()),
        Just("parameters:\n  - P:\n      type: string\n".to_string()),
        Just("      - name: F\n        action: CreateFile\n        inputs:\n          - path: '{{ build.S.inputs[3].x }}'\n            permissions: 0999\n".to_string()),
        Just("        timeoutSeconds: {a: b}\n".to_string()),
        Just("&a [*a]\n".to_string()),
        "[ -~\n]{0,40}",
    ]
}

/// Cases per property: 2,000 in the test suite (a few seconds); `scripts/fuzz` runs more
/// through `AMICTL_PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("AMICTL_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        let _ = Document::parse("fuzz.yml", ".".into(), text);
    }

    #[test]
    fn loader_never_panics_on_document_shaped_text(parts in prop::collection::vec(fragment(), 0..12)) {
        let _ = Document::parse("fuzz.yml", ".".into(), parts.concat());
    }

    #[test]
    fn expression_parser_never_panics(text in "[{} a-zA-Z0-9_.:\\[\\]()-]{0,80}") {
        let _ = toe::expr::parse(&text);
    }

    #[test]
    fn decimal_parser_never_panics_and_is_reflexive(text in "[-+0-9.]{0,20}") {
        if let Some(d) = toe::condition::Decimal::parse(&text) {
            prop_assert_eq!(d.cmp(&d), std::cmp::Ordering::Equal);
        }
    }
}
