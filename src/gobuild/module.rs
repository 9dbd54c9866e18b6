//! Where a package named by import path most likely lives, read from the main module's
//! `go.mod` without running go.
//!
//! Only `go list` knows for sure, and on a large program it answers after the first
//! builds could have started. This guess lets them start: an import path inside the
//! main module, or inside a module the main module replaces with a local directory,
//! maps to a directory under that module's root. A guess is never trusted: the build
//! it starts is used only if `go list` names the same directory, so a wrong one (a
//! workspace or `-modfile` set where this reader cannot see, a vendored replacement)
//! costs a build, never a wrong image. Where the reader can see that go would look
//! elsewhere (a `go.work`; a nested module; for a replaced module, a vendor
//! directory), it does not guess.

use std::path::{Path, PathBuf};

/// The directory holding `import_path`, if the main module of `workdir` (the first
/// `go.mod` above it) or one of its local replacements provides it.
pub fn guess_package_dir(workdir: &Path, import_path: &str) -> Option<PathBuf> {
    // Absolute, so that every directory above it is looked at, as go does.
    let workdir = std::fs::canonicalize(workdir).ok()?;
    let mut root = None;
    for dir in workdir.ancestors() {
        if dir.join("go.work").exists() {
            return None;
        }
        if root.is_none() && dir.join("go.mod").is_file() {
            root = Some(dir);
        }
    }
    let root = root?;
    let go_mod = std::fs::read_to_string(root.join("go.mod")).ok()?;
    let module = read_go_mod(&go_mod);
    let vendored = root.join("vendor/modules.txt").exists();
    let candidates = std::iter::once((module.path?, root.to_path_buf())).chain(
        module
            .local_replacements
            .into_iter()
            .filter(|_| !vendored)
            .map(|(path, dir)| (path, root.join(dir))),
    );
    // go gives a package to the module with the longest path that holds it.
    let (_, module_root, rest) = candidates
        .filter_map(|(path, dir)| {
            let rest = import_path.strip_prefix(path.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (path, dir, rest.to_string()))
        })
        .max_by_key(|(path, _, _)| path.len())?;
    let mut dir = module_root;
    for part in rest.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        // A nested go.mod makes everything under it another module.
        if dir.join("go.mod").exists() {
            return None;
        }
    }
    dir.is_dir().then_some(dir)
}

/// What the guess needs from a `go.mod`.
#[derive(Debug, Default, PartialEq, Eq)]
struct GoMod {
    path: Option<String>,
    /// `replace old => ./dir` for every version of `old` (a replacement of one version
    /// applies only if that version is selected, which only go knows).
    local_replacements: Vec<(String, String)>,
}

fn read_go_mod(text: &str) -> GoMod {
    let mut module = GoMod::default();
    let mut in_replace_block = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let words: Vec<String> = line.split_whitespace().map(unquote).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let replacement = match words.as_slice() {
            [")"] => {
                in_replace_block = false;
                None
            }
            ["replace", "("] => {
                in_replace_block = true;
                None
            }
            ["module", path] => {
                module.path = Some(path.to_string());
                None
            }
            ["replace", old, "=>", new] => Some((old, new)),
            [old, "=>", new] if in_replace_block => Some((old, new)),
            _ => None,
        };
        if let Some((old, new)) = replacement {
            let local = new.starts_with("./") || new.starts_with("../") || new.starts_with('/');
            if local {
                module
                    .local_replacements
                    .push((old.to_string(), new.to_string()));
            }
        }
    }
    module
}

/// A go.mod word without its quotes (`"example.com/m"` or a back-quoted one).
fn unquote(word: &str) -> String {
    word.trim_matches(|c| c == '"' || c == '`').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_gives_the_module_path_and_its_local_replacements() {
        let module = read_go_mod(
            "// a program\nmodule \"example.com/main\" // quoted\n\ngo 1.22\n\n\
             require example.com/dep v1.0.0\n\
             replace example.com/dep => ../dep\n\
             replace example.com/pinned v1.0.0 => ./pinned\n\
             replace (\n\texample.com/b => /abs/b\n\texample.com/remote => example.com/fork v1.2.0\n)\n\
             replace example.com/c => ./c // after the block\n",
        );
        assert_eq!(module.path.as_deref(), Some("example.com/main"));
        assert_eq!(
            module.local_replacements,
            [
                ("example.com/dep".to_string(), "../dep".to_string()),
                ("example.com/b".to_string(), "/abs/b".to_string()),
                ("example.com/c".to_string(), "./c".to_string()),
            ]
        );
    }

    #[test]
    fn packages_map_to_the_module_that_holds_them_or_to_no_guess() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        let dep = dir.path().join("dep");
        for d in [
            &main.join("cmd/app"),
            &dep.join("cmd/tool"),
            &main.join("nested"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            main.join("go.mod"),
            "module example.com/main\nreplace example.com/main/dep => ../dep\n",
        )
        .unwrap();
        std::fs::write(
            main.join("nested/go.mod"),
            "module example.com/main/nested\n",
        )
        .unwrap();
        let workdir = main.join("cmd");
        let guess = |path: &str| {
            guess_package_dir(&workdir, path).map(|d| std::fs::canonicalize(d).unwrap())
        };
        assert_eq!(guess("example.com/main"), Some(main.clone()));
        assert_eq!(
            guess("example.com/main/cmd/app"),
            Some(main.join("cmd/app"))
        );
        // The longer module path wins.
        assert_eq!(
            guess("example.com/main/dep/cmd/tool"),
            Some(dep.join("cmd/tool"))
        );
        assert_eq!(guess("example.com/mainly"), None);
        assert_eq!(guess("example.com/main/nested/x"), None);
        assert_eq!(guess("example.com/other"), None);
        // A vendor directory: replacements come from it.
        std::fs::create_dir_all(main.join("vendor")).unwrap();
        std::fs::write(main.join("vendor/modules.txt"), "").unwrap();
        assert_eq!(guess("example.com/main/dep/cmd/tool"), None);
        assert_eq!(
            guess("example.com/main/cmd/app"),
            Some(main.join("cmd/app"))
        );
        // A workspace: go would look at every module in it.
        std::fs::write(dir.path().join("go.work"), "go 1.22\nuse ./main\n").unwrap();
        assert_eq!(guess("example.com/main/cmd/app"), None);
    }
}
