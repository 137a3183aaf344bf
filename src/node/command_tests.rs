use super::*;
use serde_json::json;

fn setup() -> (BTreeMap<String, PathBuf>, Roots) {
    let mut programs = BTreeMap::new();
    programs.insert(
        "touchframes".to_string(),
        PathBuf::from("/opt/bin/touchframes"),
    );
    (
        programs,
        Roots {
            project: "/p".into(),
            output: "/o".into(),
        },
    )
}

#[test]
fn placeholders_are_substituted_and_program_comes_from_config() {
    let (programs, roots) = setup();
    let params = json!({"program": "touchframes", "args": ["--from", "{from}", "--to", "{to}", "--out={output_root}/x", "{step}"]});
    let launch = argv(
        &programs,
        &roots,
        &params,
        Some(Frames {
            from: 3,
            to: 9,
            step: 2,
        }),
    )
    .unwrap();
    assert_eq!(launch.program, PathBuf::from("/opt/bin/touchframes"));
    assert_eq!(
        launch.runs,
        vec![vec!["--from", "3", "--to", "9", "--out=/o/x", "2"]]
    );
    assert_eq!(launch.frames_total, 4);
}

#[test]
fn frame_placeholder_runs_once_per_frame() {
    let (programs, roots) = setup();
    let params = json!({"program": "touchframes", "args": ["{output_root}/f_{frame}.txt"]});
    let launch = argv(
        &programs,
        &roots,
        &params,
        Some(Frames {
            from: 1,
            to: 5,
            step: 2,
        }),
    )
    .unwrap();
    assert_eq!(
        launch.runs,
        vec![vec!["/o/f_1.txt"], vec!["/o/f_3.txt"], vec!["/o/f_5.txt"]]
    );
}

#[test]
fn program_not_in_config_is_rejected() {
    let (programs, roots) = setup();
    for name in ["/bin/sh", "sh", "../touchframes"] {
        let params = json!({"program": name, "args": []});
        assert!(
            argv(&programs, &roots, &params, None).is_err(),
            "{name} accepted"
        );
    }
}

#[test]
fn escaping_paths_and_unknown_placeholders_are_rejected() {
    let (programs, roots) = setup();
    for arg in [
        "/etc/passwd",
        "--out=/etc/x",
        "{output_root}/../../etc",
        "../x",
        "{home}",
        "~/x",
        "a\nb",
        "-o/etc/x",
        "-C/",
        "--out:/etc/x",
        "@/etc/passwd",
        "a,/etc/x",
        "x y/../z",
        "{output_root}/a/../../b",
        "-O~/x",
        r"C:\Windows\x",
        "C:foo",
        "c:/x",
        "--out=D:x",
        "-oC:x",
        r"\\server\share\x",
        r"shots\a.blend",
        "a,C:x",
    ] {
        let params = json!({"program": "touchframes", "args": [arg]});
        let err = argv(&programs, &roots, &params, None).unwrap_err();
        assert!(matches!(err, NodeError::Rejected(_)), "{arg}: {err}");
    }
}

#[test]
fn roots_relative_paths_and_flags_with_separate_values_are_accepted() {
    let (programs, roots) = setup();
    for arg in [
        "{output_root}/f_{frame}.out",
        "--out={output_root}/x",
        "-o{output_root}/x",
        "shots/a.blend",
        "-o",
        "--threads=4",
        "a-b/c",
        "scene:main",
        "--size=1920:1080",
        "--codec=h264:main",
    ] {
        let params = json!({"program": "touchframes", "args": [arg]});
        assert!(
            argv(&programs, &roots, &params, None).is_ok(),
            "{arg} refused"
        );
    }
}
