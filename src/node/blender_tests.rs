use super::*;
use serde_json::json;

struct Fixture {
    _tmp: tempfile::TempDir,
    roots: Roots,
    cfg: BlenderType,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("project")).unwrap();
    let project = tmp.path().join("project").canonicalize().unwrap();
    std::fs::create_dir_all(project.join("shots")).unwrap();
    std::fs::write(project.join("shots/a.blend"), b"BLENDER").unwrap();
    // As the node's config makes them: both roots exist and are canonical.
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let roots = Roots {
        project,
        output: tmp.path().join("out").canonicalize().unwrap(),
    };
    let cfg = BlenderType {
        program: "/usr/bin/blender".into(),
        threads: 2,
        args: vec![],
    };
    Fixture {
        _tmp: tmp,
        roots,
        cfg,
    }
}

fn frames(from: i64, to: i64, step: i64) -> Option<Frames> {
    Some(Frames { from, to, step })
}

#[test]
fn argv_orders_output_and_range_before_render() {
    let f = fixture();
    let params = json!({"file": "shots/a.blend", "output": "s/frame_####", "engine": "CYCLES", "format": "PNG", "scene": "Main"});
    let launch = argv(&f.cfg, &f.roots, &params, frames(4, 6, 1)).unwrap();
    let file = f
        .roots
        .project
        .join("shots/a.blend")
        .to_string_lossy()
        .into_owned();
    let out = f
        .roots
        .output
        .join("s/frame_####")
        .to_string_lossy()
        .into_owned();
    let expected: Vec<String> = [
        "-Y", "-b", &file, "-S", "Main", "-o", &out, "-E", "CYCLES", "-F", "PNG", "-s", "4", "-e",
        "6", "-j", "1", "-t", "2", "-a",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(launch.runs, vec![expected]);
    assert_eq!(launch.frames_total, 3);
}

#[test]
fn input_outside_project_root_is_rejected() {
    let f = fixture();
    for file in ["../x.blend", "/etc/passwd", "shots/../../x.blend"] {
        let params = json!({"file": file, "output": "o/f_####"});
        assert!(
            argv(&f.cfg, &f.roots, &params, frames(1, 1, 1)).is_err(),
            "{file} accepted"
        );
    }
}

#[test]
fn output_outside_output_root_is_rejected() {
    let f = fixture();
    for output in ["../o_####", "/tmp/o_####", "-o"] {
        let params = json!({"file": "shots/a.blend", "output": output});
        assert!(
            argv(&f.cfg, &f.roots, &params, None).is_err(),
            "{output} accepted"
        );
    }
}

#[test]
fn flag_injection_through_engine_or_scene_is_rejected() {
    let f = fixture();
    let cases = [
        json!({"file": "shots/a.blend", "output": "o", "engine": "--python-expr"}),
        json!({"file": "shots/a.blend", "output": "o", "engine": "CYCLES --python x.py"}),
        json!({"file": "shots/a.blend", "output": "o", "scene": "-P"}),
        json!({"file": "shots/a.blend", "output": "o", "format": "-PNG"}),
        json!({"file": "--python-expr", "output": "o"}),
    ];
    for params in cases {
        let err = argv(&f.cfg, &f.roots, &params, None).unwrap_err();
        assert!(matches!(err, NodeError::Rejected(_)), "{params}: {err}");
    }
}

#[test]
fn missing_input_file_is_rejected() {
    let f = fixture();
    let params = json!({"file": "shots/missing.blend", "output": "o"});
    assert!(argv(&f.cfg, &f.roots, &params, None).is_err());
}

#[test]
fn reversed_frame_range_is_rejected() {
    let f = fixture();
    let params = json!({"file": "shots/a.blend", "output": "o"});
    assert!(argv(&f.cfg, &f.roots, &params, frames(5, 1, 1)).is_err());
}
