//! `weir plugin new NAME --lang L --world W`: writes a plugin project that
//! builds with one command and runs in `weir plugin test` offline.
//!
//! The project is made of the templates in `plugins/templates/` (one source
//! file set per language and world, samples shared by all) and a copy of
//! that language's SDK (`plugins/sdk/`; TypeScript uses the JavaScript one
//! and its declarations) and, for Python, JavaScript and TypeScript, of the
//! WIT contract: all embedded in the binary, so a project needs nothing
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
    /// Rust, with `weir-plugin-sdk` (weir:plugin@0.2.0)
    Rust,
    /// Python, with componentize-py (weir:plugin@0.2.0)
    Python,
    /// JavaScript, with componentize-js (weir:plugin@0.2.0)
    Js,
    /// TypeScript, compiled by tsc, with componentize-js (weir:plugin@0.2.0)
    #[value(alias = "typescript")]
    Ts,
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

/// What is done to a file's text when it is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Copied as it is.
    Copy,
    /// The name and world put in.
    Template,
    /// A template, made executable (a build script).
    Script,
}

/// One file of a project: where it goes, where in the repository it comes
/// from, its text, and what is done to it.
#[derive(Clone, Copy)]
pub(crate) struct File {
    path: &'static str,
    /// Where in the repository it comes from (for the tests that check
    /// every template and SDK file reaches a project).
    #[cfg(test)]
    source: &'static str,
    text: &'static str,
    kind: Kind,
}

/// `file!(Kind, "dest/in/project", "path/in/repository")`: embeds the source.
macro_rules! file {
    ($kind:ident, $dest:expr, $src:expr) => {
        File {
            path: $dest,
            #[cfg(test)]
            source: $src,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $src)),
            kind: Kind::$kind,
        }
    };
}

/// The samples `weir plugin test` reads, in every project.
const SAMPLES: &[File] = &[
    file!(Copy, "run.json", "plugins/templates/samples/run.json"),
    file!(Copy, "job.json", "plugins/templates/samples/job.json"),
    file!(Copy, "stats.json", "plugins/templates/samples/stats.json"),
];

/// The released contract a Python, JavaScript or TypeScript plugin is built
/// against.
const WIT_0_2_0: File = file!(Copy, "wit/plugin.wit", "wit/v0.2.0/plugin.wit");

/// The Rust SDK, whole (a test checks no file of `plugins/sdk/rust` is
/// missing here).
macro_rules! rust_sdk {
    ($($file:literal),* $(,)?) => {
        &[$(file!(
            Copy,
            concat!("weir-plugin-sdk/", $file),
            concat!("plugins/sdk/rust/", $file)
        )),*]
    };
}
const RUST_SDK: &[File] = rust_sdk![
    "Cargo.toml",
    "build.rs",
    "wit/plugin.wit",
    "src/config.rs",
    "src/context.rs",
    "src/error.rs",
    "src/job.rs",
    "src/json.rs",
    "src/k8s.rs",
    "src/lib.rs",
    "src/log.rs",
    "src/patch.rs",
    "src/quantity.rs",
];

const RUST: &[File] = &[
    file!(Template, "Cargo.toml", "plugins/templates/rust/Cargo.toml"),
    file!(Template, "Cargo.lock", "plugins/templates/rust/Cargo.lock"),
    file!(
        Copy,
        "rust-toolchain.toml",
        "plugins/templates/rust/rust-toolchain.toml"
    ),
    file!(Script, "build.sh", "plugins/templates/rust/build.sh"),
    file!(Template, "README.md", "plugins/templates/rust/README.md"),
    file!(Copy, ".gitignore", "plugins/templates/rust/gitignore"),
];

const PYTHON: &[File] = &[
    file!(Script, "build.sh", "plugins/templates/python/build.sh"),
    file!(Template, "README.md", "plugins/templates/python/README.md"),
    file!(Copy, ".gitignore", "plugins/templates/python/gitignore"),
    file!(
        Copy,
        "weir_plugin/__init__.py",
        "plugins/sdk/python/weir_plugin/__init__.py"
    ),
];

const JS: &[File] = &[
    file!(
        Template,
        "package.json",
        "plugins/templates/js/package.json"
    ),
    file!(Template, "README.md", "plugins/templates/js/README.md"),
    file!(Copy, ".gitignore", "plugins/templates/js/gitignore"),
    file!(Copy, "weir-plugin.js", "plugins/sdk/js/weir-plugin.js"),
    file!(Copy, "weir-plugin.d.ts", "plugins/sdk/js/weir-plugin.d.ts"),
];

const TS: &[File] = &[
    file!(
        Template,
        "package.json",
        "plugins/templates/ts/package.json"
    ),
    file!(Copy, "tsconfig.json", "plugins/templates/ts/tsconfig.json"),
    file!(Template, "README.md", "plugins/templates/ts/README.md"),
    file!(Copy, ".gitignore", "plugins/templates/ts/gitignore"),
    file!(Copy, "weir-plugin.js", "plugins/sdk/js/weir-plugin.js"),
    file!(Copy, "weir-plugin.d.ts", "plugins/sdk/js/weir-plugin.d.ts"),
    file!(
        Copy,
        "weir-plugin-world.d.ts",
        "plugins/sdk/js/weir-plugin-world.d.ts"
    ),
];

/// The files of one language's template for one world
/// (`plugins/templates/<lang>/<world>/`).
macro_rules! world_files {
    (rust, $world:literal) => {
        vec![
            file!(
                Template,
                "src/lib.rs",
                concat!("plugins/templates/rust/", $world, "/lib.rs")
            ),
            file!(
                Copy,
                "config.json",
                concat!("plugins/templates/rust/", $world, "/config.json")
            ),
        ]
    };
    (python, $world:literal) => {
        vec![
            file!(
                Template,
                "app.py",
                concat!("plugins/templates/python/", $world, "/app.py")
            ),
            file!(
                Template,
                "policy.py",
                concat!("plugins/templates/python/", $world, "/policy.py")
            ),
            file!(
                Template,
                "test_policy.py",
                concat!("plugins/templates/python/", $world, "/test_policy.py")
            ),
            file!(
                Copy,
                "config.json",
                concat!("plugins/templates/python/", $world, "/config.json")
            ),
        ]
    };
    (js, $world:literal) => {
        vec![
            file!(
                Template,
                "plugin.js",
                concat!("plugins/templates/js/", $world, "/plugin.js")
            ),
            file!(
                Template,
                "policy.js",
                concat!("plugins/templates/js/", $world, "/policy.js")
            ),
            file!(
                Template,
                "policy.test.js",
                concat!("plugins/templates/js/", $world, "/policy.test.js")
            ),
            file!(
                Copy,
                "config.json",
                concat!("plugins/templates/js/", $world, "/config.json")
            ),
        ]
    };
    (ts, $world:literal) => {
        vec![
            file!(
                Template,
                "plugin.ts",
                concat!("plugins/templates/ts/", $world, "/plugin.ts")
            ),
            file!(
                Template,
                "policy.ts",
                concat!("plugins/templates/ts/", $world, "/policy.ts")
            ),
            file!(
                Template,
                "policy.test.ts",
                concat!("plugins/templates/ts/", $world, "/policy.test.ts")
            ),
            file!(
                Copy,
                "config.json",
                concat!("plugins/templates/ts/", $world, "/config.json")
            ),
        ]
    };
}

/// The files of one language and world that are not shared.
fn world_files(lang: Lang, world: WorldArg) -> Vec<File> {
    use WorldArg::{Admission, Mutator, Router};
    match (lang, world) {
        (Lang::Rust, Router) => world_files!(rust, "router"),
        (Lang::Rust, Admission) => world_files!(rust, "admission"),
        (Lang::Rust, Mutator) => world_files!(rust, "mutator"),
        (Lang::Python, Router) => world_files!(python, "router"),
        (Lang::Python, Admission) => world_files!(python, "admission"),
        (Lang::Python, Mutator) => world_files!(python, "mutator"),
        (Lang::Js, Router) => world_files!(js, "router"),
        (Lang::Js, Admission) => world_files!(js, "admission"),
        (Lang::Js, Mutator) => world_files!(js, "mutator"),
        (Lang::Ts, Router) => world_files!(ts, "router"),
        (Lang::Ts, Admission) => world_files!(ts, "admission"),
        (Lang::Ts, Mutator) => world_files!(ts, "mutator"),
    }
}

/// Every file of a project, in the order they are written.
fn project(lang: Lang, world: WorldArg) -> Vec<File> {
    let shared: &[File] = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
        Lang::Ts => TS,
    };
    let mut files = world_files(lang, world);
    files.extend_from_slice(shared);
    files.extend_from_slice(SAMPLES);
    match lang {
        Lang::Rust => files.extend_from_slice(RUST_SDK),
        Lang::Python | Lang::Js | Lang::Ts => files.push(WIT_0_2_0),
    }
    files
}

impl File {
    /// The text with the name and world put in.
    fn render(&self, name: &str, world: WorldArg) -> String {
        if self.kind == Kind::Copy {
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
        if file.kind == Kind::Script {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(write_err)?;
        }
    }
    let (build, test) = match lang {
        Lang::Rust => ("./build.sh", "cargo test"),
        Lang::Python => ("./build.sh", "python3 -m pytest"),
        Lang::Js => ("npm install && npm run build", "npm test"),
        Lang::Ts => ("npm run build", "npm install && npm test"),
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

    const LANGS: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::Ts];
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
        let mut embedded: Vec<&str> = RUST_SDK
            .iter()
            .map(|f| {
                assert_eq!(
                    f.path.strip_prefix("weir-plugin-sdk/"),
                    f.source.strip_prefix("plugins/sdk/rust/")
                );
                f.source.trim_start_matches("plugins/sdk/rust/")
            })
            .collect();
        embedded.sort_unstable();
        assert_eq!(embedded, files_under(&repo("plugins/sdk/rust")));
    }

    #[test]
    fn every_template_file_reaches_a_project() {
        // Each file under plugins/templates/ (but its own README) is the
        // source of a file in some project.
        let sources: std::collections::BTreeSet<&str> = LANGS
            .iter()
            .flat_map(|&lang| WORLDS.iter().flat_map(move |&world| project(lang, world)))
            .map(|f| f.source)
            .collect();
        for rel in files_under(&repo("plugins/templates")) {
            if rel == "README.md" {
                continue;
            }
            let source = format!("plugins/templates/{rel}");
            assert!(
                sources.contains(source.as_str()),
                "{source} is in no project"
            );
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
                let npm = matches!(lang, Lang::Js | Lang::Ts);
                let build =
                    std::fs::metadata(out.join(if npm { "package.json" } else { "build.sh" }))
                        .expect("build file");
                if !npm {
                    use std::os::unix::fs::PermissionsExt;
                    assert_eq!(build.permissions().mode() & 0o111, 0o111);
                }
                let world_name = World::from(world).as_str();
                let build_text = std::fs::read_to_string(out.join(match lang {
                    Lang::Rust => "Cargo.toml",
                    Lang::Python => "build.sh",
                    Lang::Js | Lang::Ts => "package.json",
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
