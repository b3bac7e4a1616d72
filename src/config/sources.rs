//! Every source of settings becomes a [`Layer`] of raw flag values keyed by setting name: the
//! environment-derived defaults, the config file (`config::python`), `GUNICORN_CMD_ARGS`,
//! `FERROCORN_CMD_ARGS` and the command line. Layers are stacked (a higher one replaces a
//! setting wholesale, so a `--bind` on the command line replaces the file's list instead of
//! adding to it) and turned back into one argument list for one final clap parse. This module
//! knows the shape of flags, not what any setting means.

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{Arg, Command};

/// The settings one source gave: setting name → raw values (none for a flag that was given).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Layer(pub BTreeMap<String, Vec<String>>);

impl Layer {
    /// The settings an argument list gives (`argv[0]` is the program name).
    pub fn from_args<I, T>(cmd: &Command, argv: I) -> Result<Layer, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = cmd.clone().try_get_matches_from(argv)?;
        let mut layer = Layer::default();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let values = match takes_values(arg) {
                true => matches
                    .get_raw(id)
                    .into_iter()
                    .flatten()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
                false => Vec::new(),
            };
            layer.0.insert(id.to_string(), values);
        }
        Ok(layer)
    }

    pub fn set(&mut self, id: &str, values: Vec<String>) {
        self.0.insert(id.to_string(), values);
    }

    pub fn get(&self, id: &str) -> Option<&[String]> {
        self.0.get(id).map(Vec::as_slice)
    }

    /// Stacks `layers`, lowest precedence first.
    pub fn stack<'a>(layers: impl IntoIterator<Item = &'a Layer>) -> Layer {
        let mut out = Layer::default();
        for layer in layers {
            out.0
                .extend(layer.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    /// The argument list that gives exactly these settings.
    pub fn to_args(&self, cmd: &Command) -> Vec<String> {
        let mut argv = vec![cmd.get_name().to_string()];
        let mut positionals = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(values) = self.0.get(arg.get_id().as_str()) else {
                continue;
            };
            match arg.get_long() {
                None => positionals.extend(values.iter().cloned()),
                Some(long) if !takes_values(arg) => argv.push(format!("--{long}")),
                Some(long) => argv.extend(values.iter().map(|v| format!("--{long}={v}"))),
            }
        }
        if !positionals.is_empty() {
            argv.push("--".into());
            argv.extend(positionals);
        }
        argv
    }
}

/// Runs `arg`'s validator from the table on one raw value.
pub fn check_value(cmd: &Command, arg: &Arg, value: &str) -> Result<(), clap::Error> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let argv = [cmd.get_name().to_string(), format!("--{long}={value}")];
    cmd.clone().try_get_matches_from(argv).map(drop)
}

/// Whether `arg` carries values (an option) or is a plain flag.
pub fn takes_values(arg: &Arg) -> bool {
    arg.get_action().takes_values()
}

/// Splits a `*_CMD_ARGS` value as a POSIX shell would (gunicorn uses `shlex.split`).
pub fn shell_split(var: &'static str, value: &str) -> Result<Vec<String>, String> {
    shlex::split(value).ok_or_else(|| format!("{var} has an unterminated quote or escape"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::CommandFactory;

    fn layer(args: &[&str]) -> Layer {
        Layer::from_args(
            &Cli::command(),
            std::iter::once("f").chain(args.iter().copied()),
        )
        .unwrap()
    }

    #[test]
    fn only_given_settings_are_in_a_layer() {
        let l = layer(&["-w", "3", "--reload", "-b", "a:1", "--bind=b:2", "m:app"]);
        assert_eq!(l.get("workers"), Some(&["3".to_string()][..]));
        assert_eq!(l.get("reload"), Some(&[][..]));
        assert_eq!(l.get("bind").map(<[_]>::len), Some(2));
        assert_eq!(l.get("wsgi_app"), Some(&["m:app".to_string()][..]));
        assert_eq!(l.get("threads"), None);
    }

    #[test]
    fn a_higher_layer_replaces_lists_whole() {
        let low = layer(&["-b", "a:1", "-b", "b:2", "-w", "2"]);
        let high = layer(&["-b", "c:3"]);
        let merged = Layer::stack([&low, &high]);
        assert_eq!(merged.get("bind"), Some(&["c:3".to_string()][..]));
        assert_eq!(merged.get("workers"), Some(&["2".to_string()][..]));
    }

    #[test]
    fn round_trips_through_arguments() {
        let l = layer(&[
            "-w",
            "3",
            "--no-sendfile",
            "-e",
            "A=-1",
            "--proxy-protocol",
            "--",
            "-m",
        ]);
        let argv = l.to_args(&Cli::command());
        assert_eq!(Layer::from_args(&Cli::command(), &argv).unwrap(), l);
    }

    #[test]
    fn shell_split_like_gunicorn() {
        assert_eq!(
            shell_split("X", r#"-w 3 --access-logformat '%(h)s "%(r)s"'"#).unwrap(),
            ["-w", "3", "--access-logformat", r#"%(h)s "%(r)s""#]
        );
        assert!(shell_split("X", "-b 'x").is_err());
    }
}
