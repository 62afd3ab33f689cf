//! `portd __serve NAME`: a managed server's supervisor, started by
//! `portd start` (see `portd_serve::serve`).

use crate::Ctx;

pub fn serve(ctx: &Ctx, key: &str, move_port: bool) -> u8 {
    let report = portd_core::sys::inherited_fd(3).map(std::fs::File::from);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(_) => return 1,
    };
    match ctx.registry() {
        Ok(reg) => portd_serve::serve::run(&reg, key, &exe, move_port, report),
        Err(e) => {
            if let Some(mut r) = report {
                use std::io::Write;
                let _ = writeln!(
                    r,
                    "error {} {}\t{}",
                    e.exit_code(),
                    e.message(),
                    e.hint().unwrap_or("")
                );
            }
            e.exit_code()
        }
    }
}
