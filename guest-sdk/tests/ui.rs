//! Misusing `#[tool]` and `export_tools!` fails to compile with a readable,
//! spanned error. Expected output lives beside each case in `tests/ui/`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
