//! A SunSpec device served over Modbus TCP: a three-phase inverter (model 103) or a wye
//! meter (model 203) behind the common model, with values the caller sets. `gridminer
//! demo` serves its PV inverter and grid meter with it, and the daemon reads them through
//! its own SunSpec reader exactly as it reads a real device.
//!
//! The register map is written here from the SunSpec model definitions (pysunspec2's
//! `model_1`, `model_103`, `model_203` JSON), not from the reader in `signal::modbus`: a
//! map derived from the reader would agree with it even where both were wrong. It is
//! checked by pysunspec2 reading it as an independent client (tests/it/r13_demo.rs).
//!
//! ```text
//! 40000  "SunS"
//! 40002  model 1   (ID, L = 66)  Mn, Md, Opt, Vr, SN, DA, Pad
//! 40070  model 103 (L = 50) or model 203 (L = 105)
//! then   0xFFFF, 0            end of the chain
//! ```
//!
//! Every point the device does not measure holds its type's "not implemented" value
//! (int16 and sunssf 0x8000, uint16 and enum16 0xFFFF, acc32 0, bitfield32 0xFFFFFFFF),
//! as a real device does. Only reads of holding registers (function 3) are served, any
//! unit id; a read outside the map is an `IllegalDataAddress` exception, another function
//! `IllegalFunction`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

use crate::units::{Hertz, WattHours, Watts};

/// Where the map starts: the first base address a SunSpec client looks at.
pub const BASE: u16 = 40000;
const SUNS: [u16; 2] = [0x5375, 0x6E53];
const COMMON_LEN: u16 = 66;
const END: u16 = 0xFFFF;

/// A point's SunSpec type, which decides its "not implemented" value and its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int16,
    Uint16,
    Enum16,
    Sunssf,
    Acc32,
    Bitfield32,
}

impl Kind {
    fn unimplemented(self) -> &'static [u16] {
        match self {
            Kind::Int16 | Kind::Sunssf => &[0x8000],
            Kind::Uint16 | Kind::Enum16 => &[0xFFFF],
            Kind::Acc32 => &[0, 0],
            Kind::Bitfield32 => &[0xFFFF, 0xFFFF],
        }
    }
}

/// The model 103 points (three-phase inverter) after ID and L, in order; offsets count
/// from the ID register, so the first point is at 2.
const MODEL_103: &[(&str, Kind)] = &[
    ("A", Kind::Uint16),
    ("AphA", Kind::Uint16),
    ("AphB", Kind::Uint16),
    ("AphC", Kind::Uint16),
    ("A_SF", Kind::Sunssf),
    ("PPVphAB", Kind::Uint16),
    ("PPVphBC", Kind::Uint16),
    ("PPVphCA", Kind::Uint16),
    ("PhVphA", Kind::Uint16),
    ("PhVphB", Kind::Uint16),
    ("PhVphC", Kind::Uint16),
    ("V_SF", Kind::Sunssf),
    ("W", Kind::Int16),
    ("W_SF", Kind::Sunssf),
    ("Hz", Kind::Uint16),
    ("Hz_SF", Kind::Sunssf),
    ("VA", Kind::Int16),
    ("VA_SF", Kind::Sunssf),
    ("VAr", Kind::Int16),
    ("VAr_SF", Kind::Sunssf),
    ("PF", Kind::Int16),
    ("PF_SF", Kind::Sunssf),
    ("WH", Kind::Acc32),
    ("WH_SF", Kind::Sunssf),
    ("DCA", Kind::Uint16),
    ("DCA_SF", Kind::Sunssf),
    ("DCV", Kind::Uint16),
    ("DCV_SF", Kind::Sunssf),
    ("DCW", Kind::Int16),
    ("DCW_SF", Kind::Sunssf),
    ("TmpCab", Kind::Int16),
    ("TmpSnk", Kind::Int16),
    ("TmpTrns", Kind::Int16),
    ("TmpOt", Kind::Int16),
    ("Tmp_SF", Kind::Sunssf),
    ("St", Kind::Enum16),
    ("StVnd", Kind::Enum16),
    ("Evt1", Kind::Bitfield32),
    ("Evt2", Kind::Bitfield32),
    ("EvtVnd1", Kind::Bitfield32),
    ("EvtVnd2", Kind::Bitfield32),
    ("EvtVnd3", Kind::Bitfield32),
    ("EvtVnd4", Kind::Bitfield32),
];

/// The model 203 points (wye-connected three-phase meter), likewise.
const MODEL_203: &[(&str, Kind)] = &[
    ("A", Kind::Int16),
    ("AphA", Kind::Int16),
    ("AphB", Kind::Int16),
    ("AphC", Kind::Int16),
    ("A_SF", Kind::Sunssf),
    ("PhV", Kind::Int16),
    ("PhVphA", Kind::Int16),
    ("PhVphB", Kind::Int16),
    ("PhVphC", Kind::Int16),
    ("PPV", Kind::Int16),
    ("PPVphAB", Kind::Int16),
    ("PPVphBC", Kind::Int16),
    ("PPVphCA", Kind::Int16),
    ("V_SF", Kind::Sunssf),
    ("Hz", Kind::Int16),
    ("Hz_SF", Kind::Sunssf),
    ("W", Kind::Int16),
    ("WphA", Kind::Int16),
    ("WphB", Kind::Int16),
    ("WphC", Kind::Int16),
    ("W_SF", Kind::Sunssf),
    ("VA", Kind::Int16),
    ("VAphA", Kind::Int16),
    ("VAphB", Kind::Int16),
    ("VAphC", Kind::Int16),
    ("VA_SF", Kind::Sunssf),
    ("VAR", Kind::Int16),
    ("VARphA", Kind::Int16),
    ("VARphB", Kind::Int16),
    ("VARphC", Kind::Int16),
    ("VAR_SF", Kind::Sunssf),
    ("PF", Kind::Int16),
    ("PFphA", Kind::Int16),
    ("PFphB", Kind::Int16),
    ("PFphC", Kind::Int16),
    ("PF_SF", Kind::Sunssf),
    ("TotWhExp", Kind::Acc32),
    ("TotWhExpPhA", Kind::Acc32),
    ("TotWhExpPhB", Kind::Acc32),
    ("TotWhExpPhC", Kind::Acc32),
    ("TotWhImp", Kind::Acc32),
    ("TotWhImpPhA", Kind::Acc32),
    ("TotWhImpPhB", Kind::Acc32),
    ("TotWhImpPhC", Kind::Acc32),
    ("TotWh_SF", Kind::Sunssf),
    ("TotVAhExp", Kind::Acc32),
    ("TotVAhExpPhA", Kind::Acc32),
    ("TotVAhExpPhB", Kind::Acc32),
    ("TotVAhExpPhC", Kind::Acc32),
    ("TotVAhImp", Kind::Acc32),
    ("TotVAhImpPhA", Kind::Acc32),
    ("TotVAhImpPhB", Kind::Acc32),
    ("TotVAhImpPhC", Kind::Acc32),
    ("TotVAh_SF", Kind::Sunssf),
    ("TotVArhImpQ1", Kind::Acc32),
    ("TotVArhImpQ1PhA", Kind::Acc32),
    ("TotVArhImpQ1PhB", Kind::Acc32),
    ("TotVArhImpQ1PhC", Kind::Acc32),
    ("TotVArhImpQ2", Kind::Acc32),
    ("TotVArhImpQ2PhA", Kind::Acc32),
    ("TotVArhImpQ2PhB", Kind::Acc32),
    ("TotVArhImpQ2PhC", Kind::Acc32),
    ("TotVArhExpQ3", Kind::Acc32),
    ("TotVArhExpQ3PhA", Kind::Acc32),
    ("TotVArhExpQ3PhB", Kind::Acc32),
    ("TotVArhExpQ3PhC", Kind::Acc32),
    ("TotVArhExpQ4", Kind::Acc32),
    ("TotVArhExpQ4PhA", Kind::Acc32),
    ("TotVArhExpQ4PhB", Kind::Acc32),
    ("TotVArhExpQ4PhC", Kind::Acc32),
    ("TotVArh_SF", Kind::Sunssf),
    ("Evt", Kind::Bitfield32),
];

/// Which device: its model, and the power it must be able to show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeviceKind {
    /// Model 103: W is the AC output, positive.
    Inverter,
    /// Model 203: W is positive when imported, negative when exported.
    Meter,
}

impl DeviceKind {
    fn model(self) -> (u16, &'static [(&'static str, Kind)]) {
        match self {
            DeviceKind::Inverter => (103, MODEL_103),
            DeviceKind::Meter => (203, MODEL_203),
        }
    }
    fn name(self) -> &'static str {
        match self {
            DeviceKind::Inverter => "demo inverter",
            DeviceKind::Meter => "demo meter",
        }
    }
}

/// What the device measures now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// An inverter's AC output, or a meter's import (negative: export), W.
    pub power: Watts,
    pub frequency: Hertz,
    /// An inverter's lifetime energy (WH); a meter's total imported (TotWhImp).
    pub energy: WattHours,
    /// A meter's total exported (TotWhExp); an inverter ignores it.
    pub exported: WattHours,
}

impl Default for Measurement {
    fn default() -> Self {
        Measurement {
            power: Watts::ZERO,
            frequency: Hertz(50.0),
            energy: WattHours(0.0),
            exported: WattHours(0.0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SunSpecServerError {
    #[error(
        "{power} W is beyond what a SunSpec int16 with a scale factor of at most 10 can carry"
    )]
    TooLarge { power: f64 },
    #[error("local address of the listener: {0}")]
    Listener(#[source] std::io::Error),
}

/// The register image and how to update it.
#[derive(Debug)]
struct Image {
    kind: DeviceKind,
    /// W_SF: 10^w_sf W per count, chosen so that `max_power` fits an int16.
    w_sf: i16,
    words: Vec<u16>,
    /// Offset of the device model's ID register within `words`.
    model_at: usize,
}

impl Image {
    fn new(kind: DeviceKind, max_power: Watts) -> Result<Self, SunSpecServerError> {
        let w_sf = (0..=10)
            .find(|sf| max_power.0.abs() / 10f64.powi(*sf) <= f64::from(i16::MAX))
            .ok_or(SunSpecServerError::TooLarge { power: max_power.0 })? as i16;
        let mut words = Vec::with_capacity(200);
        words.extend(SUNS);
        words.extend([1, COMMON_LEN]);
        for (text, regs) in [
            ("gridminer", 16),
            (kind.name(), 16),
            ("", 8),
            (env!("CARGO_PKG_VERSION"), 8),
            ("GM-DEMO-1", 16),
        ] {
            words.extend(string_registers(text, regs));
        }
        words.extend([1, 0xFFFF]); // DA (unit id 1), Pad
        let (id, points) = kind.model();
        let model_at = words.len();
        words.extend([id, 0]);
        for (_, k) in points {
            words.extend_from_slice(k.unimplemented());
        }
        words[model_at + 1] = (words.len() - model_at - 2) as u16;
        words.extend([END, 0]);
        let mut image = Image {
            kind,
            w_sf,
            words,
            model_at,
        };
        image.set(Measurement::default());
        Ok(image)
    }

    /// Offset of point `name` within `words`. Panics on a name not in the model: the
    /// names are this file's constants, so a miss is a typo here, not outside input.
    fn at(&self, name: &str) -> usize {
        let (_, points) = self.kind.model();
        let mut offset = self.model_at + 2;
        for (n, k) in points {
            if *n == name {
                return offset;
            }
            offset += k.unimplemented().len();
        }
        panic!("no point {name} in model {}", self.kind.model().0);
    }

    fn put(&mut self, name: &str, value: u16) {
        let at = self.at(name);
        self.words[at] = value;
    }

    fn put32(&mut self, name: &str, value: u32) {
        let at = self.at(name);
        self.words[at] = (value >> 16) as u16;
        self.words[at + 1] = value as u16;
    }

    fn set(&mut self, m: Measurement) {
        let scale = 10f64.powi(i32::from(self.w_sf));
        let w = (m.power.0 / scale)
            .round()
            .clamp(-f64::from(i16::MAX), f64::from(i16::MAX)) as i16;
        // Hz with two decimals; an acc32 counts whole Wh and wraps, as SunSpec says.
        let hz = (m.frequency.0 * 100.0).round().clamp(0.0, 32767.0) as u16;
        let wh = |e: WattHours| (e.0.max(0.0) as u64 % (1 << 32)) as u32;
        self.put("W_SF", self.w_sf as u16);
        self.put("Hz_SF", (-2i16) as u16);
        match self.kind {
            DeviceKind::Inverter => {
                self.put("W", w as u16);
                self.put("Hz", hz);
                // Lifetime energy in whole Wh: WH_SF 0. An acc32 of 0 reads as "not
                // implemented", so the count starts at 1 Wh.
                self.put("WH_SF", 0);
                self.put32("WH", wh(m.energy).max(1));
                // St: 4 = MPPT (producing), 2 = sleeping.
                self.put("St", if m.power.0 > 0.0 { 4 } else { 2 });
            }
            DeviceKind::Meter => {
                self.put("W", w as u16);
                let phase = ((m.power.0 / 3.0) / scale)
                    .round()
                    .clamp(-f64::from(i16::MAX), f64::from(i16::MAX))
                    as i16;
                for p in ["WphA", "WphB", "WphC"] {
                    self.put(p, phase as u16);
                }
                self.put("Hz", hz);
                self.put("TotWh_SF", 0);
                self.put32("TotWhImp", wh(m.energy).max(1));
                self.put32("TotWhExp", wh(m.exported).max(1));
            }
        }
    }

    fn read(&self, address: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        let start = usize::from(
            address
                .checked_sub(BASE)
                .ok_or(ExceptionCode::IllegalDataAddress)?,
        );
        let end = start + usize::from(count);
        if count == 0 || count > 125 || end > self.words.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(self.words[start..end].to_vec())
    }
}

/// `text` as SunSpec string registers: two bytes per register, NUL padded.
fn string_registers(text: &str, regs: usize) -> Vec<u16> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(regs * 2, 0);
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// The Modbus service of one device: every connection reads the same image.
#[derive(Clone)]
struct Service(Arc<Mutex<Image>>);

impl tokio_modbus::server::Service for Service {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let answer = match req {
            Request::ReadHoldingRegisters(address, count) => self
                .0
                .lock()
                .expect("the image lock is never held across a panic")
                .read(address, count)
                .map(Response::ReadHoldingRegisters),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Sets what a served device shows ([`SunSpecDevice::values`]).
#[derive(Clone)]
pub struct Values(Arc<Mutex<Image>>);

impl Values {
    pub fn set(&self, m: Measurement) {
        self.0
            .lock()
            .expect("the image lock is never held across a panic")
            .set(m);
    }
}

/// A served SunSpec device. Dropping it does not stop it: [`SunSpecDevice::stop`] does.
pub struct SunSpecDevice {
    image: Arc<Mutex<Image>>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SunSpecDevice {
    /// Serves a `kind` device on `listener` (bind `127.0.0.1:0` and pass it in), able to
    /// show powers up to `max_power` either way.
    pub fn start(
        kind: DeviceKind,
        max_power: Watts,
        listener: TcpListener,
    ) -> Result<Self, SunSpecServerError> {
        let addr = listener
            .local_addr()
            .map_err(SunSpecServerError::Listener)?;
        let image = Arc::new(Mutex::new(Image::new(kind, max_power)?));
        let shutdown = CancellationToken::new();
        let service = Service(image.clone());
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, peer| {
                let service = service.clone();
                async move { accept_tcp_connection(stream, peer, |_| Ok(Some(service.clone()))) }
            };
            // A client that sends garbage loses its own connection only.
            let on_error = |error: std::io::Error| tracing::debug!(%error, "SunSpec client connection ended with an error");
            // Cancelling drops the server, whose guard ends every connection's task.
            if let Err(error) = server
                .serve_until(&on_connected, on_error, stop.cancelled_owned())
                .await
            {
                tracing::error!(%error, %addr, "SunSpec device stopped accepting connections");
            }
        });
        Ok(SunSpecDevice {
            image,
            addr,
            shutdown,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the device shows from now on.
    pub fn set(&self, m: Measurement) {
        self.values().set(m);
    }

    /// A handle that sets what the device shows, for a task of its own.
    pub fn values(&self) -> Values {
        Values(self.image.clone())
    }

    /// Closes the listener and every connection, and waits for the server task.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, addr = %self.addr, "SunSpec device task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_has_the_marker_the_chain_and_the_end() {
        let img = Image::new(DeviceKind::Inverter, Watts(100_000.0)).unwrap();
        assert_eq!(&img.words[0..2], &SUNS);
        assert_eq!(&img.words[2..4], &[1, 66]);
        assert_eq!(&img.words[70..72], &[103, 50]);
        assert_eq!(&img.words[122..124], &[END, 0]);
        assert_eq!(img.words.len(), 124);
        let meter = Image::new(DeviceKind::Meter, Watts(100_000.0)).unwrap();
        assert_eq!(&meter.words[70..72], &[203, 105]);
        assert_eq!(meter.words.len(), 70 + 2 + 105 + 2);
    }

    #[test]
    fn points_sit_where_the_model_definitions_put_them() {
        let mut img = Image::new(DeviceKind::Inverter, Watts(100_000.0)).unwrap();
        assert_eq!(img.at("W") - img.model_at, 14);
        assert_eq!(img.at("WH") - img.model_at, 24);
        assert_eq!(img.at("St") - img.model_at, 38);
        img.set(Measurement {
            power: Watts(54_321.0),
            ..Measurement::default()
        });
        // 100 kW needs W_SF 1: 5432 counts of 10 W.
        assert_eq!(img.words[img.at("W")] as i16, 5432);
        assert_eq!(img.words[img.at("W_SF")] as i16, 1);
        assert_eq!(img.words[img.at("Hz")], 5000);
        let mut meter = Image::new(DeviceKind::Meter, Watts(20_000.0)).unwrap();
        assert_eq!(meter.at("W") - meter.model_at, 18);
        assert_eq!(meter.at("W_SF") - meter.model_at, 22);
        assert_eq!(meter.at("Evt") - meter.model_at, 105);
        meter.set(Measurement {
            power: Watts(-1234.0),
            ..Measurement::default()
        });
        assert_eq!(meter.words[meter.at("W")] as i16, -1234);
        assert_eq!(meter.words[meter.at("W_SF")] as i16, 0);
    }

    #[test]
    fn reads_outside_the_map_are_refused_not_served_short() {
        let img = Image::new(DeviceKind::Meter, Watts(1000.0)).unwrap();
        assert_eq!(img.read(39_999, 2), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(img.read(BASE, 0), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(
            img.read(BASE + 170, 20),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(img.read(BASE, 2).unwrap(), SUNS.to_vec());
    }
}
