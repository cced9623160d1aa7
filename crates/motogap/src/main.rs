//! `motogap --upstream 127.0.0.1:PORT [--port N] [--map-key KEY=ACCOUNT]… [--latency SCALE]`
//!
//! `--latency SCALE` turns the latency model on (see the crate's `latency` module): SCALE
//! modelled seconds pass in each real one (60: a real second is a modelled minute).
//!
//! Prints the proxy's URL on stdout, then serves until killed. `scripts/demo-aws` uses it.

use std::net::SocketAddr;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut upstream: Option<SocketAddr> = None;
    let mut port = 0u16;
    let mut keys = Vec::new();
    let mut latency: Option<f64> = None;
    while let Some(a) = args.next() {
        let value = args.next();
        match (a.as_str(), value) {
            ("--upstream", Some(v)) => upstream = v.trim_start_matches("http://").parse().ok(),
            ("--port", Some(v)) => port = v.parse().unwrap_or(0),
            ("--map-key", Some(v)) => keys.extend(v.split_once('=').map(|(k, a)| (k.to_string(), a.to_string()))),
            ("--latency", Some(v)) if v.parse::<f64>().is_ok_and(|s| s >= 1.0 && s.is_finite()) => {
                latency = v.parse().ok();
            }
            _ => {
                eprintln!(
                    "usage: motogap --upstream 127.0.0.1:PORT [--port N] [--map-key KEY=ACCOUNT]… [--latency SCALE (>= 1)]"
                );
                std::process::exit(2);
            }
        }
    }
    let Some(upstream) = upstream else {
        eprintln!("motogap: --upstream 127.0.0.1:PORT is required");
        std::process::exit(2);
    };
    let gap = match motogap::Gap::start(upstream, port) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("motogap: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    for (k, a) in keys {
        gap.map_key(&k, &a);
    }
    if let Some(scale) = latency {
        gap.model(scale);
    }
    println!("{}", gap.url());
    loop {
        std::thread::park();
    }
}
