//! `weir plugin new NAME --lang L --world W`: writes a plugin project that
//! builds with one command and runs in `weir plugin test` offline.
//!
//! The project is made of the templates in `plugins/templates/` (one source
//! file set per language and world, samples shared by all) and a copy of
//! that language's SDK (`plugins/sdk/`) and, for Python and JavaScript, of
//! the WIT contract: all embedded in the binary, so a project needs nothing
//! from a Weir checkout. In the templates `my-plugin` (`my_plugin` in a Rust
//! file name) stands for the plugin's name and `{{world}}` for its world.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;
use serde_json::json;

use super::CliError;
use crate::domain::{World, validate_dns_label};

/// A plugin's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, with `weir-plugin-sdk` (weir:plugin@0.1.0)
    Rust,
    /// Python, with componentize-py (weir:plugin@0.2.0)
    Python,
    /// JavaScript, with componentize-js (weir:plugin@0.2.0)
    Js,
}

/// A plugin's world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorldArg {
    Router,
    Admission,
    Mutator,
}

impl From<WorldArg> for World {
    fn from(w: WorldArg) -> World {
        match w {
            WorldArg::Router => World::Router,
            WorldArg::Admission => World::Admission,
            WorldArg::Mutator => World::Mutator,
        }
    }
}

/// One file of a project: where it goes, its text, whether the name and
/// world are substituted in it, whether it is executable.
#[derive(Clone, Copy)]
pub(crate) struct File {
    path: &'static str,
    text: &'static str,
    template: bool,
    executable: bool,
}

macro_rules! embed {
    ($src:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $src))
    };
}

/// A template file (name and world substituted).
const fn template(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        template: true,
        executable: false,
    }
}

/// A file copied as it is.
const fn copy(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        template: false,
        executable: false,
    }
}

/// A build script (a template, executable).
const fn script(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        template: true,
        executable: true,
    }
}

/// The samples `weir plugin test` reads, in every project.
const SAMPLES: &[File] = &[
    copy("run.json", embed!("plugins/templates/samples/run.json")),
    copy("job.json", embed!("plugins/templates/samples/job.json")),
    copy("stats.json", embed!("plugins/templates/samples/stats.json")),
];

/// The released contract a Python or JavaScript plugin is built against.
const WIT_0_2_0: File = copy("wit/plugin.wit", embed!("wit/v0.2.0/plugin.wit"));

/// The Rust SDK, whole (a test checks no file of `plugins/sdk/rust` is
/// missing here).
pub(crate) const RUST_SDK: &[File] = &[
    copy(
        "weir-plugin-sdk/Cargo.toml",
        embed!("plugins/sdk/rust/Cargo.toml"),
    ),
    copy(
        "weir-plugin-sdk/build.rs",
        embed!("plugins/sdk/rust/build.rs"),
    ),
    copy(
        "weir-plugin-sdk/wit/plugin.wit",
        embed!("plugins/sdk/rust/wit/plugin.wit"),
    ),
    copy(
        "weir-plugin-sdk/src/config.rs",
        embed!("plugins/sdk/rust/src/config.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/context.rs",
        embed!("plugins/sdk/rust/src/context.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/error.rs",
        embed!("plugins/sdk/rust/src/error.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/job.rs",
        embed!("plugins/sdk/rust/src/job.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/json.rs",
        embed!("plugins/sdk/rust/src/json.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/k8s.rs",
        embed!("plugins/sdk/rust/src/k8s.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/lib.rs",
        embed!("plugins/sdk/rust/src/lib.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/log.rs",
        embed!("plugins/sdk/rust/src/log.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/patch.rs",
        embed!("plugins/sdk/rust/src/patch.rs"),
    ),
    copy(
        "weir-plugin-sdk/src/quantity.rs",
        embed!("plugins/sdk/rust/src/quantity.rs"),
    ),
];

const RUST: &[File] = &[
    template("Cargo.toml", embed!("plugins/templates/rust/Cargo.toml")),
    template("Cargo.lock", embed!("plugins/templates/rust/Cargo.lock")),
    copy(
        "rust-toolchain.toml",
        embed!("plugins/templates/rust/rust-toolchain.toml"),
    ),
    script("build.sh", embed!("plugins/templates/rust/build.sh")),
    template("README.md", embed!("plugins/templates/rust/README.md")),
    copy(".gitignore", embed!("plugins/templates/rust/gitignore")),
];

const PYTHON: &[File] = &[
    script("build.sh", embed!("plugins/templates/python/build.sh")),
    template("README.md", embed!("plugins/templates/python/README.md")),
    copy(".gitignore", embed!("plugins/templates/python/gitignore")),
    copy(
        "weir_plugin/__init__.py",
        embed!("plugins/sdk/python/weir_plugin/__init__.py"),
    ),
];

const JS: &[File] = &[
    template("package.json", embed!("plugins/templates/js/package.json")),
    template("README.md", embed!("plugins/templates/js/README.md")),
    copy(".gitignore", embed!("plugins/templates/js/gitignore")),
    copy("weir-plugin.js", embed!("plugins/sdk/js/weir-plugin.js")),
    copy(
        "weir-plugin.d.ts",
        embed!("plugins/sdk/js/weir-plugin.d.ts"),
    ),
];

/// The files of one language and world that are not shared.
fn world_files(lang: Lang, world: WorldArg) -> Vec<File> {
    use WorldArg::*;
    match (lang, world) {
        (Lang::Rust, Router) => vec![
            template("src/lib.rs", embed!("plugins/templates/rust/router/lib.rs")),
            copy(
                "config.json",
                embed!("plugins/templates/rust/router/config.json"),
            ),
        ],
        (Lang::Rust, Admission) => vec![
            template(
                "src/lib.rs",
                embed!("plugins/templates/rust/admission/lib.rs"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/rust/admission/config.json"),
            ),
        ],
        (Lang::Rust, Mutator) => vec![
            template(
                "src/lib.rs",
                embed!("plugins/templates/rust/mutator/lib.rs"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/rust/mutator/config.json"),
            ),
        ],
        (Lang::Python, Router) => vec![
            template("app.py", embed!("plugins/templates/python/router/app.py")),
            template(
                "policy.py",
                embed!("plugins/templates/python/router/policy.py"),
            ),
            template(
                "test_policy.py",
                embed!("plugins/templates/python/router/test_policy.py"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/python/router/config.json"),
            ),
        ],
        (Lang::Python, Admission) => vec![
            template(
                "app.py",
                embed!("plugins/templates/python/admission/app.py"),
            ),
            template(
                "policy.py",
                embed!("plugins/templates/python/admission/policy.py"),
            ),
            template(
                "test_policy.py",
                embed!("plugins/templates/python/admission/test_policy.py"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/python/admission/config.json"),
            ),
        ],
        (Lang::Python, Mutator) => vec![
            template("app.py", embed!("plugins/templates/python/mutator/app.py")),
            template(
                "policy.py",
                embed!("plugins/templates/python/mutator/policy.py"),
            ),
            template(
                "test_policy.py",
                embed!("plugins/templates/python/mutator/test_policy.py"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/python/mutator/config.json"),
            ),
        ],
        (Lang::Js, Router) => vec![
            template("plugin.js", embed!("plugins/templates/js/router/plugin.js")),
            template("policy.js", embed!("plugins/templates/js/router/policy.js")),
            template(
                "policy.test.js",
                embed!("plugins/templates/js/router/policy.test.js"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/js/router/config.json"),
            ),
        ],
        (Lang::Js, Admission) => vec![
            template(
                "plugin.js",
                embed!("plugins/templates/js/admission/plugin.js"),
            ),
            template(
                "policy.js",
                embed!("plugins/templates/js/admission/policy.js"),
            ),
            template(
                "policy.test.js",
                embed!("plugins/templates/js/admission/policy.test.js"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/js/admission/config.json"),
            ),
        ],
        (Lang::Js, Mutator) => vec![
            template(
                "plugin.js",
                embed!("plugins/templates/js/mutator/plugin.js"),
            ),
            template(
                "policy.js",
                embed!("plugins/templates/js/mutator/policy.js"),
            ),
            template(
                "policy.test.js",
                embed!("plugins/templates/js/mutator/policy.test.js"),
            ),
            copy(
                "config.json",
                embed!("plugins/templates/js/mutator/config.json"),
            ),
        ],
    }
}

/// Every file of a project, in the order they are written.
fn project(lang: Lang, world: WorldArg) -> Vec<File> {
    let shared: &[File] = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    let mut files = world_files(lang, world);
    files.extend_from_slice(shared);
    files.extend_from_slice(SAMPLES);
    match lang {
        Lang::Rust => files.extend_from_slice(RUST_SDK),
        Lang::Python | Lang::Js => files.push(WIT_0_2_0),
    }
    files
}

impl File {
    /// The text with the name and world put in.
    fn render(&self, name: &str, world: WorldArg) -> String {
        if !self.template {
            return self.text.to_owned();
        }
        let world = World::from(world).as_str();
        self.text
            .replace("my-plugin", name)
            .replace("my_plugin", &name.replace('-', "_"))
            .replace("{{world}}", world)
    }
}

/// What `plugin new` wrote, and the commands to go on with.
pub(crate) struct Written {
    pub dir: PathBuf,
    pub files: Vec<&'static str>,
    pub build: &'static str,
    pub test: &'static str,
    pub wasm: String,
}

/// Writes the project `name` of `lang` and `world` into `dir`, which must
/// not exist or be empty.
pub(crate) fn write_project(
    name: &str,
    lang: Lang,
    world: WorldArg,
    dir: &Path,
) -> Result<Written, CliError> {
    validate_dns_label("NAME", name).map_err(|e| CliError::input("NAME", e.reason))?;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::input(
                    "--dir",
                    format!("{} exists and is not empty", dir.display()),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CliError::input(
                "--dir",
                format!("cannot read {}: {e}", dir.display()),
            ));
        }
    }
    let files = project(lang, world);
    for file in &files {
        let path = dir.join(file.path);
        let write_err = |source| CliError::WriteFile {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        std::fs::write(&path, file.render(name, world)).map_err(write_err)?;
        if file.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(write_err)?;
        }
    }
    let (build, test) = match lang {
        Lang::Rust => ("./build.sh", "cargo test"),
        Lang::Python => ("./build.sh", "python3 -m pytest"),
        Lang::Js => ("npm install && npm run build", "npm test"),
    };
    Ok(Written {
        dir: dir.to_path_buf(),
        files: files.iter().map(|f| f.path).collect(),
        build,
        test,
        wasm: format!("{name}.wasm"),
    })
}

/// `weir plugin new`: needs no server.
pub(super) fn execute(
    name: &str,
    lang: Lang,
    world: WorldArg,
    dir: Option<PathBuf>,
    json_output: bool,
) -> Result<ExitCode, CliError> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let written = write_project(name, lang, world, &dir)?;
    let world_name = World::from(world).as_str();
    let job = if world == WorldArg::Mutator {
        " --job job.json"
    } else {
        ""
    };
    let try_it = format!(
        "weir plugin test {} --ctx run.json{job} --config config.json --stats stats.json",
        written.wasm
    );
    if json_output {
        super::output::emit_json(&json!({
            "dir": written.dir,
            "name": name,
            "lang": format!("{lang:?}").to_lowercase(),
            "world": world_name,
            "files": written.files,
            "build": written.build,
            "test": written.test,
            "wasm": written.wasm,
            "try": try_it,
        }))?;
    } else {
        super::output::emit(&format!(
            "wrote the {world_name} plugin `{name}` ({lang}) in {dir}: {n} files\n\n\
             \x20 cd {dir}\n\
             \x20 {test:<34} # its tests, natively\n\
             \x20 {build:<34} # builds {wasm}\n\
             \x20 {try_it}\n\
             \x20 weir plugin add {name} {wasm}\n\
             \x20 {bind} --config @config.json",
            lang = format!("{lang:?}").to_lowercase(),
            dir = written.dir.display(),
            n = written.files.len(),
            test = written.test,
            build = written.build,
            wasm = written.wasm,
            bind = if world == WorldArg::Router {
                format!("weir router bind {name}")
            } else {
                format!("weir pool bind POOL {name}")
            },
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];
    const WORLDS: [WorldArg; 3] = [WorldArg::Router, WorldArg::Admission, WorldArg::Mutator];

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    /// Every file under `dir`, relative to it, skipping build output.
    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read_dir") {
                let path = entry.expect("entry").path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if [
                    "target",
                    "node_modules",
                    "__pycache__",
                    ".venv",
                    ".pytest_cache",
                ]
                .contains(&name)
                {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(dir).expect("under dir");
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_rust_sdk_is_copied_whole() {
        let mut embedded: Vec<String> = RUST_SDK
            .iter()
            .map(|f| f.path.trim_start_matches("weir-plugin-sdk/").to_owned())
            .collect();
        embedded.sort();
        assert_eq!(embedded, files_under(&repo("plugins/sdk/rust")));
    }

    #[test]
    fn every_template_file_reaches_a_project() {
        // Each file under plugins/templates/ is embedded: its text is one of
        // the texts a project is written from.
        let root = repo("plugins/templates");
        for rel in files_under(&root) {
            if rel == "README.md" {
                continue;
            }
            let text = std::fs::read_to_string(root.join(&rel)).expect("read");
            let found = LANGS.iter().any(|&lang| {
                WORLDS
                    .iter()
                    .any(|&world| project(lang, world).iter().any(|f| f.text == text))
            });
            assert!(found, "plugins/templates/{rel} is in no project");
        }
    }

    #[test]
    fn a_project_has_its_name_and_world_and_no_placeholder() {
        for lang in LANGS {
            for world in WORLDS {
                let dir = tempfile::tempdir().expect("tempdir");
                let out = dir.path().join("p");
                let written = write_project("team-gate", lang, world, &out).expect("write_project");
                assert_eq!(written.wasm, "team-gate.wasm");
                for rel in &written.files {
                    let text = std::fs::read_to_string(out.join(rel)).expect("read");
                    for placeholder in ["my-plugin", "my_plugin", "{{world}}"] {
                        assert!(
                            !text.contains(placeholder),
                            "{lang:?} {world:?}: {rel} still says {placeholder}"
                        );
                    }
                }
                let build = std::fs::metadata(out.join(match lang {
                    Lang::Js => "package.json",
                    _ => "build.sh",
                }))
                .expect("build file");
                if lang != Lang::Js {
                    use std::os::unix::fs::PermissionsExt;
                    assert_eq!(build.permissions().mode() & 0o111, 0o111);
                }
                let world_name = World::from(world).as_str();
                let build_text = std::fs::read_to_string(out.join(match lang {
                    Lang::Rust => "Cargo.toml",
                    Lang::Python => "build.sh",
                    Lang::Js => "package.json",
                }))
                .expect("read");
                assert!(
                    build_text.contains(&format!("{world_name}-plugin")),
                    "{lang:?} {world:?}"
                );
                assert!(build_text.contains("team-gate"), "{lang:?} {world:?}");
            }
        }
    }

    #[test]
    fn a_bad_name_or_a_used_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write_project("Bad_Name", Lang::Python, WorldArg::Router, dir.path())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("invalid NAME:") && e.contains("lowercase")),
            "{err:?}"
        );
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let err = write_project("ok", Lang::Js, WorldArg::Mutator, dir.path())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("invalid --dir:") && e.contains("not empty")),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt"))
                .ok()
                .as_deref(),
            Some("mine")
        );
        // An empty directory is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert!(write_project("ok", Lang::Js, WorldArg::Mutator, &empty).is_ok());
    }
}
