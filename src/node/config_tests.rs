use super::*;

struct Dirs {
    _tmp: tempfile::TempDir,
    project: PathBuf,
    output: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let output = tmp.path().join("out");
    Dirs {
        project,
        output,
        _tmp: tmp,
    }
}

fn parse(d: &Dirs, types: &str) -> Result<NodeConfig, NodeError> {
    let text = format!(
        "url = \"http://127.0.0.1:1\"\nsecret = \"s\"\nslots = 2\nproject_root = {:?}\noutput_root = {:?}\n{types}",
        d.project, d.output
    );
    let file: FileConfig = toml::from_str(&text).map_err(|e| NodeError::Config(e.to_string()))?;
    validate(file)
}

#[test]
fn valid_config_lists_only_the_types_it_can_run() {
    let d = dirs();
    let cfg = parse(&d, "[types.command.programs]\ntrue = \"/bin/true\"\n").unwrap();
    assert_eq!(
        cfg.types(),
        vec![crate::core::model::JobType::Command],
        "no blender section: blender must not be polled"
    );
    assert_eq!(cfg.programs["true"], PathBuf::from("/bin/true"));
    assert!(
        cfg.output_root.is_dir(),
        "the output root should have been created"
    );
}

#[test]
fn unknown_type_is_refused_with_its_name() {
    let d = dirs();
    let err = parse(&d, "[types.blendr]\nprogram = \"/bin/true\"\n").unwrap_err();
    assert!(err.to_string().contains("blendr"), "{err}");
}

#[test]
fn missing_program_is_refused_with_its_path() {
    let d = dirs();
    let err = parse(&d, "[types.blender]\nprogram = \"/nonexistent/blender\"\n").unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("/nonexistent/blender"), "{err}");
}

#[test]
fn bare_program_name_is_resolved_in_path() {
    let d = dirs();
    let cfg = parse(&d, "[types.command.programs]\nsh = \"sh\"\n").unwrap();
    assert!(cfg.programs["sh"].is_absolute(), "{:?}", cfg.programs);
}

#[test]
fn no_types_is_refused() {
    let d = dirs();
    let err = parse(&d, "").unwrap_err();
    assert!(err.to_string().contains("no job types"), "{err}");
}

#[test]
fn missing_project_root_is_refused() {
    let d = dirs();
    std::fs::remove_dir(&d.project).unwrap();
    let err = parse(&d, "[types.command.programs]\nt = \"/bin/true\"\n").unwrap_err();
    assert!(err.to_string().contains("project_root"), "{err}");
}

#[test]
fn unreadable_file_names_the_path() {
    let err = read_file(Path::new("/nonexistent/node.toml")).unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("/nonexistent/node.toml"), "{err}");
}

#[test]
fn bad_toml_names_the_file() {
    let d = dirs();
    let path = d.project.join("bad.toml");
    std::fs::write(&path, "slots = [").unwrap();
    let err = read_file(&path).unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("bad.toml"),
        "{err}"
    );
}

#[test]
fn slots_out_of_range_is_refused() {
    let d = dirs();
    let text = format!(
        "url = \"http://x\"\nsecret = \"s\"\nslots = 0\nproject_root = {:?}\noutput_root = {:?}\n[types.command.programs]\nt = \"/bin/true\"\n",
        d.project, d.output
    );
    let err = validate(toml::from_str(&text).unwrap()).unwrap_err();
    assert!(err.to_string().contains("slots"), "{err}");
}
