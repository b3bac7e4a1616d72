//! The table of gunicorn's server hooks: functions a config file defines by name (`on_starting`,
//! `post_request`, ...), with the positional arguments each is called with and its help. The
//! config file reader (`config::python`) checks a hook's arity against this table; the docs are
//! generated from it. Calling hooks belongs to the lifecycle, not here.

/// One server hook, named as in gunicorn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    pub name: &'static str,
    /// The positional parameters the hook is called with.
    pub params: &'static str,
    /// How many positional parameters a hook function may declare.
    pub arities: &'static [usize],
    pub help: &'static str,
}

impl Hook {
    pub fn find(name: &str) -> Option<&'static Hook> {
        HOOKS.iter().find(|h| h.name == name)
    }
}

/// Every hook gunicorn defines, in the order the server's life reaches them.
pub const HOOKS: &[Hook] = &[
    Hook {
        name: "on_starting",
        params: "server",
        arities: &[1],
        help: "Called just before the server is initialized.",
    },
    Hook {
        name: "on_reload",
        params: "server",
        arities: &[1],
        help: "Called to recycle workers during a reload (SIGHUP).",
    },
    Hook {
        name: "when_ready",
        params: "server",
        arities: &[1],
        help: "Called just after the server is started and listening.",
    },
    Hook {
        name: "pre_fork",
        params: "server, worker",
        arities: &[2],
        help: "Called just before a worker process is started.",
    },
    Hook {
        name: "post_fork",
        params: "server, worker",
        arities: &[2],
        help: "Called just after a worker process has been started.",
    },
    Hook {
        name: "post_worker_init",
        params: "worker",
        arities: &[1],
        help: "Called just after a worker has loaded the application.",
    },
    Hook {
        name: "worker_int",
        params: "worker",
        arities: &[1],
        help: "Called when a worker receives SIGINT or SIGQUIT.",
    },
    Hook {
        name: "worker_abort",
        params: "worker",
        arities: &[1],
        help: "Called when a request runs past --timeout.",
    },
    Hook {
        name: "pre_exec",
        params: "server",
        arities: &[1],
        help: "Called just before a new master process is started (SIGUSR2).",
    },
    Hook {
        name: "pre_request",
        params: "worker, req",
        arities: &[2],
        help: "Called just before a request is handed to the app.",
    },
    Hook {
        name: "post_request",
        params: "worker, req, environ, resp",
        arities: &[2, 3, 4],
        help: "Called after a request was answered; it may take 2, 3 or 4 arguments.",
    },
    Hook {
        name: "child_exit",
        params: "server, worker",
        arities: &[2],
        help: "Called in the server just after a worker process exited.",
    },
    Hook {
        name: "worker_exit",
        params: "server, worker",
        arities: &[2],
        help: "Called in a worker just before it exits.",
    },
    Hook {
        name: "nworkers_changed",
        params: "server, new_value, old_value",
        arities: &[3],
        help: "Called when the number of workers changed (SIGTTIN/SIGTTOU).",
    },
    Hook {
        name: "on_exit",
        params: "server",
        arities: &[1],
        help: "Called just before the server exits.",
    },
    Hook {
        name: "ssl_context",
        params: "config, default_ssl_context_factory",
        arities: &[2],
        help: "Builds Python's SSLContext in gunicorn; ferrocorn configures rustls instead.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_arities_match_params() {
        for (i, h) in HOOKS.iter().enumerate() {
            assert!(
                HOOKS[i + 1..].iter().all(|o| o.name != h.name),
                "{}",
                h.name
            );
            let declared = h.params.split(',').count();
            assert_eq!(h.arities.iter().max(), Some(&declared), "{}", h.name);
        }
        assert_eq!(
            Hook::find("post_request").map(|h| h.arities),
            Some(&[2, 3, 4][..])
        );
        assert!(Hook::find("on_start").is_none());
    }
}
