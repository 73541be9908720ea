//! A small SMTP server the email tests start on loopback: it speaks enough
//! ESMTP for `lettre` (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
//! records every message it accepts, and can be told to refuse the next N
//! messages with a given reply (e.g. `451` to test retries, `550` for a
//! permanent failure). No external program.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub rcpt_to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Received {
    /// The value of header `name` (case-insensitive), unfolded; `None` when
    /// absent. Only the message's own header block is searched.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        let mut in_header = false;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if in_header && let Some(v) = value.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if value.is_some() && in_header {
                break;
            }
            in_header = false;
            if let Some((field, rest)) = line.split_once(':')
                && field.eq_ignore_ascii_case(name)
            {
                in_header = true;
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The number of header lines named `name`.
    pub fn header_count(&self, name: &str) -> usize {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n")
            .filter(|line| {
                line.split_once(':')
                    .is_some_and(|(field, _)| field.eq_ignore_ascii_case(name))
            })
            .count()
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    /// Replies for the next messages' end of DATA, in order, instead of 250.
    refusals: Vec<String>,
    /// Messages refused so far.
    refused: usize,
}

/// A running sink; stops when dropped.
pub struct SmtpSink {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts a sink on a free loopback port.
    pub fn start() -> SmtpSink {
        SmtpSink::start_on(0)
    }

    /// Starts a sink on `port` of loopback (0: a free one).
    pub fn start_on(port: u16) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the SMTP sink");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || {
                                let _ = serve(stream, &state);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        SmtpSink {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// The relay URL for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers `reply` (e.g. `451 4.3.0 try again later`) instead of
    /// accepting the next `n` messages.
    pub fn refuse_next(&self, n: usize, reply: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .refusals
            .extend(std::iter::repeat_n(reply.to_owned(), n));
    }

    /// How many messages were refused so far.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    /// Waits until `n` messages were accepted (or `timeout` passed);
    /// returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n || start.elapsed() > timeout {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` messages were refused (or `timeout` passed).
    pub fn wait_refused(&self, n: usize, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let refused = self.refused();
            if refused >= n || start.elapsed() > timeout {
                return refused;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One SMTP session.
fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    let mut reply = |line: &str| -> std::io::Result<()> {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\r\n")?;
        out.flush()
    };
    reply("220 sink.test ESMTP souk test sink")?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            reply("250-sink.test")?;
            reply("250-8BITMIME")?;
            reply("250 SMTPUTF8")?;
        } else if upper.starts_with("HELO") {
            reply("250 sink.test")?;
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = line[10..].trim().to_owned();
            rcpt_to.clear();
            reply("250 2.1.0 Ok")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt_to.push(line[8..].trim().to_owned());
            reply("250 2.1.5 Ok")?;
        } else if upper == "DATA" {
            reply("354 End data with <CR><LF>.<CR><LF>")?;
            let mut data = String::new();
            loop {
                let mut line = String::new();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let line = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(line);
            }
            let refusal = {
                let mut state = state.lock().unwrap();
                if state.refusals.is_empty() {
                    let n = state.messages.len() + 1;
                    state.messages.push(Received {
                        mail_from: mail_from.clone(),
                        rcpt_to: rcpt_to.clone(),
                        data,
                    });
                    Err(n)
                } else {
                    state.refused += 1;
                    Ok(state.refusals.remove(0))
                }
            };
            match refusal {
                Ok(refusal) => reply(&refusal)?,
                Err(n) => reply(&format!("250 2.0.0 Ok: queued as sink-{n}"))?,
            }
        } else if upper == "RSET" {
            mail_from.clear();
            rcpt_to.clear();
            reply("250 2.0.0 Ok")?;
        } else if upper == "NOOP" {
            reply("250 2.0.0 Ok")?;
        } else if upper == "QUIT" {
            reply("221 2.0.0 Bye")?;
            return Ok(());
        } else {
            reply("502 5.5.2 Command not recognized")?;
        }
    }
}
