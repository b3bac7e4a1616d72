//! Renderings of the settings table: `--print-config` (every setting and its resolved value, in
//! gunicorn's `name = value` layout) and `docs/settings.md` (generated; a test keeps the
//! checked-in copy current). Both read the clap table and the hook table; neither knows any
//! setting by name.

use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command};

use super::cli::{support, Support};
use super::hooks::HOOKS;
use super::python::HookFn;
use super::sources::{takes_values, Layer};

/// The lines `--print-config` prints: every setting and hook, sorted, with values shown as
/// Python shows them (`['127.0.0.1:8000']`, `True`, `None`).
pub fn print_config(cmd: &Command, merged: &Layer, hooks: &[HookFn]) -> String {
    let mut rows = values(cmd, merged);
    rows.extend(HOOKS.iter().map(|h| {
        let value = hooks
            .iter()
            .find(|f| f.hook.name == h.name)
            .map_or_else(|| "None".to_string(), |f| format!("<{}()>", f.qualname));
        (h.name.to_string(), value)
    }));
    rows.sort();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:width$} = {v}");
    }
    out
}

/// Every setting and its value as Python shows it.
pub fn values(cmd: &Command, merged: &Layer) -> Vec<(String, String)> {
    cmd.get_arguments()
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .map(|arg| (arg.get_id().to_string(), value_of(arg, merged)))
        .collect()
}

fn value_of(arg: &Arg, merged: &Layer) -> String {
    let id = arg.get_id().as_str();
    let given = merged.get(id);
    if !takes_values(arg) {
        let set = matches!(arg.get_action(), ArgAction::SetFalse);
        return python_bool(if given.is_some() { !set } else { set }).into();
    }
    let values: Vec<String> = match given {
        Some(v) => v.to_vec(),
        None => arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect(),
    };
    if matches!(arg.get_action(), ArgAction::Append) {
        let items: Vec<String> = values.iter().map(|v| python_str_repr(v)).collect();
        return format!("[{}]", items.join(", "));
    }
    match values.last() {
        Some(v) => v.clone(),
        None => "None".into(),
    }
}

fn python_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// `repr()` of a Python str, for the characters settings contain.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The first line of a clap error, without clap's `error: ` prefix.
pub fn clap_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string()
}

/// `docs/settings.md`, generated from the table.
pub fn settings_doc(cmd: &Command) -> String {
    let mut out = String::from(
        "# Settings\n\n\
         <!-- Generated from src/config/cli.rs and src/config/hooks.rs by \
         `FERROCORN_BLESS=1 cargo test settings_doc`; do not edit. -->\n\n\
         Every setting can be given on the command line, in `GUNICORN_CMD_ARGS` or \
         `FERROCORN_CMD_ARGS` (shell-split), or in the config file (`-c`, else \
         `./ferrocorn.conf.py`, else `./gunicorn.conf.py`) under its name. Precedence, lowest \
         first: built-in default → environment-derived default (`PORT`, `WEB_CONCURRENCY`, \
         `FORWARDED_ALLOW_IPS`) → config file → `GUNICORN_CMD_ARGS` → `FERROCORN_CMD_ARGS` → \
         command line. Settings marked *not yet supported* are accepted and validated, and \
         logged at startup when set.\n",
    );
    let mut sections: Vec<&str> = Vec::new();
    for arg in cmd.get_arguments() {
        if let Some(h) = arg.get_help_heading() {
            if !sections.contains(&h) {
                sections.push(h);
            }
        }
    }
    for section in sections {
        let _ = write!(out, "\n## {section}\n");
        let mut args: Vec<&Arg> = cmd
            .get_arguments()
            .filter(|a| a.get_help_heading() == Some(section))
            .collect();
        args.sort_by_key(|a| a.get_id().as_str());
        for arg in args {
            document(&mut out, arg);
        }
    }
    out.push_str(
        "\n## Server Hooks\n\nFunctions defined in the config file under these names. Each is \
         checked for the number of positional arguments it takes when the file is read. \
         ferrocorn loads them; calling them is not yet supported.\n",
    );
    for h in HOOKS {
        let _ = write!(
            out,
            "\n### `{}`\n\n`def {}({}):`\n\n{}\n",
            h.name, h.name, h.params, h.help
        );
    }
    out
}

fn document(out: &mut String, arg: &Arg) {
    let id = arg.get_id().as_str();
    let _ = write!(out, "\n### `{id}`\n\n");
    let value = match takes_values(arg) {
        true => arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        false => String::new(),
    };
    let flags: Vec<String> = arg
        .get_short()
        .map(|s| format!("`-{s}{value}`"))
        .into_iter()
        .chain(arg.get_long().map(|l| format!("`--{l}{value}`")))
        .chain(
            arg.get_visible_aliases()
                .into_iter()
                .flatten()
                .map(|a| format!("`--{a}{value}`")),
        )
        .collect();
    let cli = match (arg.get_long(), arg.is_hide_set()) {
        (None, _) => "positional `APP`".to_string(),
        (Some(_), true) => format!("config file; also the unlisted {}", flags.join(", ")),
        (Some(_), false) => flags.join(", "),
    };
    let _ = writeln!(out, "- Command line: {cli}");
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && takes_values(arg) {
        let _ = writeln!(out, "- Default: `{}`", defaults.join(", "));
    }
    match support(id) {
        Support::Supported => {}
        Support::NotYet => {
            out.push_str("- *Not yet supported*: accepted, validated, and logged when set.\n")
        }
        Support::NoEffect(why) => {
            let _ = writeln!(out, "- *No effect in ferrocorn*: {why}.");
        }
    }
    if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
        // clap drops the final period of one-paragraph help; prose wants it back.
        let help = help.to_string();
        let stop = if help.ends_with('.') { "" } else { "." };
        let _ = write!(out, "\n{help}{stop}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::CommandFactory;

    #[test]
    fn print_config_looks_like_gunicorn() {
        let cmd = Cli::command();
        let merged = Layer::from_args(&cmd, ["f", "-w", "3", "--reload", "m:app"]).unwrap();
        let text = print_config(&cmd, &merged, &[]);
        let line = |k: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(k))
                .unwrap_or_else(|| panic!("{k} missing"))
                .split(" = ")
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert_eq!(line("workers"), "3");
        assert_eq!(line("reload"), "True");
        assert_eq!(line("spew"), "False");
        assert_eq!(line("sendfile"), "True");
        assert_eq!(line("bind"), "['127.0.0.1:8000']");
        assert_eq!(line("raw_env"), "[]");
        assert_eq!(line("pidfile"), "None");
        assert_eq!(line("wsgi_app"), "m:app");
        assert_eq!(line("on_starting"), "None");
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn str_repr() {
        assert_eq!(python_str_repr("a"), "'a'");
        assert_eq!(python_str_repr("it's"), "\"it's\"");
        assert_eq!(python_str_repr("a\\b"), "'a\\\\b'");
    }

    /// docs/settings.md is generated; `FERROCORN_BLESS=1 cargo test settings_doc` rewrites it.
    #[test]
    fn settings_doc_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/settings.md");
        let fresh = settings_doc(&Cli::command());
        if std::env::var_os("FERROCORN_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "docs/settings.md is stale: run FERROCORN_BLESS=1 cargo test settings_doc"
        );
    }
}
