//! SunSpec: discovery of the model chain and decoding of the few points gridminer uses.
//!
//! Discovery looks for the `SunS` marker at 40000, then 0, then 50000, and walks the chain
//! of `(ID, L)` headers from there to the end marker (ID 0xFFFF). Each poll then reads one
//! block from the model that serves the device's role and decodes typed points from it:
//!
//! | models            | W (W)          | Hz (Hz)            | energy (Wh)            |
//! |-------------------|----------------|--------------------|------------------------|
//! | 101-103 inverter  | int16 @14, SF @15 | uint16 @16, SF @17 | WH acc32 @24, SF @26 |
//! | 701 DER AC meas.  | int16 @10, SF @116 | uint32 @17, SF @115 | TotWhInj uint64 @19, SF @120 |
//! | 201-204 meter     | int16 @18, SF @22 | int16 @16, SF @17  | (not read)             |
//!
//! Offsets count from the model's ID register, as pysunspec2's model definitions do.
//! A point holding its type's "not implemented" value (int16 0x8000, uint16 0xFFFF,
//! int32 0x80000000, uint32 0xFFFFFFFF, acc32/acc64 0, uint64 all ones), or whose scale
//! factor does, is missing: it yields no observation. A scale factor outside -10..=10
//! (SunSpec's range) makes the point missing too.
//!
//! Sign conventions: an inverter's W is its AC output (701: "positive for DER generation,
//! negative for absorption"). A SunSpec meter's W is positive when power flows to the load
//! side of the meter, i.e. imported from the grid for a meter at the grid connection, and
//! negative when exported. That is `Quantity::GridPower`'s convention, so a `grid-meter`'s
//! W passes through unchanged and export comes out negative; a `site-load` meter's W is the
//! load's consumption.
//!
//! The `sunspec` crate (0.9, built on tokio-modbus 0.17) was not used: it decodes mandatory
//! points as bare integers, so a device that puts the "not implemented" sentinel into a
//! mandatory point (many do, e.g. Hz while the inverter sleeps) would hand us -32768 W, and
//! its single error enum mixes transport failures with device exceptions. The few points
//! needed here are small enough to decode directly.

use serde::Deserialize;

use super::error::ModbusError;
use super::RegisterReader;
use crate::clock::Timestamp;
use crate::signal::{Observation, Quantity};
use crate::units::{Hertz, WattHours, Watts};

/// `SunS` as two registers.
pub const SUNS_MARKER: [u16; 2] = [0x5375, 0x6E53];
/// Where discovery looks for the marker, in order.
pub const BASE_ADDRESSES: [u16; 3] = [40000, 0, 50000];
/// The ID that ends the model chain.
pub const END_MODEL_ID: u16 = 0xFFFF;
/// A chain longer than this is taken as garbage rather than walked forever.
const MAX_MODELS: usize = 64;

/// What a SunSpec device's power stands for at this site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// An inverter whose W is `Quantity::PvPower`.
    Pv,
    /// An inverter whose W is `Quantity::WindPower`.
    Wind,
    /// A meter at the grid connection: W is `Quantity::GridPower` (import positive).
    GridMeter,
    /// A meter on the site's own consumption: W is `Quantity::SiteLoad`.
    SiteLoad,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pv => "pv",
            Role::Wind => "wind",
            Role::GridMeter => "grid-meter",
            Role::SiteLoad => "site-load",
        }
    }
    fn wants_meter(self) -> bool {
        matches!(self, Role::GridMeter | Role::SiteLoad)
    }
    pub fn quantity(self) -> Quantity {
        match self {
            Role::Pv => Quantity::PvPower,
            Role::Wind => Quantity::WindPower,
            Role::GridMeter => Quantity::GridPower,
            Role::SiteLoad => Quantity::SiteLoad,
        }
    }
}

/// One model in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelHeader {
    pub id: u16,
    /// Address of the model's ID register.
    pub address: u16,
    /// The model's L register: its length after the ID and L registers.
    pub len: u16,
}

/// The SunSpec types of the points read here, each with its "not implemented" value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointType {
    Int16,
    Uint16,
    Uint32,
    Acc32,
    Uint64,
}

impl PointType {
    fn words(self) -> usize {
        match self {
            PointType::Int16 | PointType::Uint16 => 1,
            PointType::Uint32 | PointType::Acc32 => 2,
            PointType::Uint64 => 4,
        }
    }
    /// The value, or `None` for the "not implemented" sentinel.
    fn decode(self, w: &[u16]) -> Option<f64> {
        let wide = w.iter().fold(0u64, |acc, &x| (acc << 16) | u64::from(x));
        match self {
            PointType::Int16 => (w[0] != 0x8000).then_some(f64::from(w[0] as i16)),
            PointType::Uint16 => (w[0] != 0xFFFF).then_some(f64::from(w[0])),
            PointType::Uint32 => (wide != 0xFFFF_FFFF).then_some(wide as f64),
            PointType::Acc32 => (wide != 0).then_some(wide as f64),
            PointType::Uint64 => (wide != u64::MAX).then_some(wide as f64),
        }
    }
}

/// A scaled point: where the value and its scale factor sit in the model.
#[derive(Debug, Clone, Copy)]
struct Point {
    offset: usize,
    ty: PointType,
    sf: usize,
}

impl Point {
    const fn new(offset: usize, ty: PointType, sf: usize) -> Self {
        Point { offset, ty, sf }
    }
    fn end(self) -> usize {
        (self.offset + self.ty.words()).max(self.sf + 1)
    }
    /// value × 10^sf, or `None` if the point or its scale factor is not implemented.
    fn read(self, block: &[u16]) -> Option<f64> {
        let raw = self
            .ty
            .decode(&block[self.offset..self.offset + self.ty.words()])?;
        let sf = scale_factor(block[self.sf])?;
        Some(raw * 10f64.powi(sf))
    }
}

/// A `sunssf` register: `None` when not implemented (0x8000) or outside SunSpec's -10..=10.
fn scale_factor(word: u16) -> Option<i32> {
    let sf = i32::from(word as i16);
    (-10..=10).contains(&sf).then_some(sf)
}

/// The points of one model family.
#[derive(Debug, Clone, Copy)]
struct Layout {
    w: Point,
    hz: Point,
    energy: Option<Point>,
}

impl Layout {
    /// Registers to read from the model's ID register to cover every point.
    fn span(&self) -> usize {
        [Some(self.w), Some(self.hz), self.energy]
            .into_iter()
            .flatten()
            .map(Point::end)
            .max()
            .unwrap_or(0)
    }
}

use PointType::*;
const INVERTER: Layout = Layout {
    w: Point::new(14, Int16, 15),
    hz: Point::new(16, Uint16, 17),
    energy: Some(Point::new(24, Acc32, 26)),
};
const DER_AC: Layout = Layout {
    w: Point::new(10, Int16, 116),
    hz: Point::new(17, Uint32, 115),
    energy: Some(Point::new(19, Uint64, 120)),
};
const METER: Layout = Layout {
    w: Point::new(18, Int16, 22),
    hz: Point::new(16, Int16, 17),
    energy: None,
};

/// Inverter models gridminer reads, in order of preference.
pub const INVERTER_MODELS: [u16; 4] = [101, 102, 103, 701];
/// Meter models gridminer reads.
pub const METER_MODELS: [u16; 4] = [201, 202, 203, 204];

fn layout(id: u16) -> Option<Layout> {
    match id {
        101..=103 => Some(INVERTER),
        701 => Some(DER_AC),
        201..=204 => Some(METER),
        _ => None,
    }
}

/// What one poll of an inverter or meter model says. A field is `None` where the device
/// does not implement the point (or its scale factor).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AcReading {
    /// Inverter: AC output, positive when generating. Meter: positive when importing.
    pub power: Option<Watts>,
    pub frequency: Option<Hertz>,
    /// Inverter lifetime energy (WH, or 701's TotWhInj). Not read from meters.
    pub energy: Option<WattHours>,
}

impl AcReading {
    /// The observations this reading makes for a device in `role`, measured at `at`.
    ///
    /// An inverter's negative W (standby draw at night) is reported as zero generation:
    /// `PvPower` and `WindPower` are >= 0, and the draw belongs to the site load.
    pub fn observations(&self, role: Role, at: Timestamp) -> Vec<Observation> {
        let mut out = Vec::with_capacity(2);
        if let Some(w) = self.power {
            let value = if role.wants_meter() {
                w
            } else {
                w.max(Watts::ZERO)
            };
            out.push(Observation::Power {
                quantity: role.quantity(),
                value,
                at,
            });
        }
        if let Some(value) = self.frequency {
            out.push(Observation::Frequency { value, at });
        }
        out
    }
}

/// The model a device in `role` is polled through, and how many registers a poll reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPlan {
    pub model: ModelHeader,
    pub count: u16,
}

/// Picks the first model in the chain that serves `role` and checks it is long enough.
pub fn plan(models: &[ModelHeader], role: Role) -> Result<PollPlan, ModbusError> {
    let (wanted, ids) = if role.wants_meter() {
        ("meter (201-204)", &METER_MODELS)
    } else {
        ("inverter (101-103, 701)", &INVERTER_MODELS)
    };
    let model = models
        .iter()
        .find(|m| ids.contains(&m.id))
        .copied()
        .ok_or_else(|| ModbusError::NoModel {
            wanted,
            found: models.iter().map(|m| m.id).collect(),
        })?;
    let span = layout(model.id)
        .expect("the model ids above all have layouts")
        .span();
    let have = usize::from(model.len) + 2;
    if have < span {
        return Err(ModbusError::ModelTooShort {
            id: model.id,
            address: model.address,
            len: model.len,
            needed: span as u16 - 2,
        });
    }
    Ok(PollPlan {
        model,
        count: span as u16,
    })
}

/// Decodes a block read from a model's ID register onwards.
pub fn decode(model_id: u16, block: &[u16]) -> Result<AcReading, String> {
    let layout = layout(model_id).ok_or_else(|| format!("model {model_id} is not decoded"))?;
    if block.len() < layout.span() {
        return Err(format!(
            "model {model_id} needs {} registers, got {}",
            layout.span(),
            block.len()
        ));
    }
    if block[0] != model_id {
        return Err(format!(
            "model ID register reads {}, expected {model_id}: the map moved",
            block[0]
        ));
    }
    Ok(AcReading {
        power: layout.w.read(block).map(Watts),
        frequency: layout.hz.read(block).map(Hertz),
        energy: layout.energy.and_then(|p| p.read(block)).map(WattHours),
    })
}

/// Finds the SunSpec marker and walks the model chain.
///
/// A base address the device refuses (a Modbus exception) or that holds something else is
/// skipped; a transport failure ends discovery with that error. A device that ends the
/// chain with an exception instead of the end marker keeps the models found so far.
pub async fn discover<R: RegisterReader>(reader: &mut R) -> Result<Vec<ModelHeader>, ModbusError> {
    let mut base = None;
    for addr in BASE_ADDRESSES {
        match reader.read_holding(addr, 2).await {
            Ok(words) if words == SUNS_MARKER => {
                base = Some(addr);
                break;
            }
            Ok(_) => continue,
            Err(e) if e.is_rejected_reply() && !e.breaks_connection() => continue,
            Err(e) => return Err(e),
        }
    }
    let base = base.ok_or(ModbusError::NotSunSpec)?;
    let mut models = Vec::new();
    let mut addr = u32::from(base) + 2;
    loop {
        if addr + 2 > 0x1_0000 || models.len() >= MAX_MODELS {
            return Err(ModbusError::Malformed {
                address: addr.min(0xFFFF) as u16,
                count: 2,
                reason: format!("model chain does not end (walked {} models)", models.len()),
            });
        }
        let header = match reader.read_holding(addr as u16, 2).await {
            Ok(h) => h,
            Err(e) if !models.is_empty() && matches!(e, ModbusError::Exception { .. }) => break,
            Err(e) => return Err(e),
        };
        let (id, len) = (header[0], header[1]);
        if id == END_MODEL_ID {
            break;
        }
        models.push(ModelHeader {
            id,
            address: addr as u16,
            len,
        });
        addr += 2 + u32::from(len);
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model block as the device serves it, from the ID register on.
    fn block(id: u16, len: u16, points: &[(usize, u16)]) -> Vec<u16> {
        let mut b = vec![0u16; usize::from(len) + 2];
        b[0] = id;
        b[1] = len;
        for &(at, v) in points {
            b[at] = v;
        }
        b
    }

    #[test]
    fn inverter_points_with_scale_factors() {
        let b = block(
            103,
            50,
            &[
                (14, 12345),
                (15, (-1i16) as u16),
                (16, 5001),
                (17, (-2i16) as u16),
                (24, 0x000F),
                (25, 0x1206),
                (26, 1),
            ],
        );
        let r = decode(103, &b).unwrap();
        assert_eq!(r.power, Some(Watts(12345.0 * 0.1)));
        assert_eq!(r.frequency, Some(Hertz(5001.0 * 0.01)));
        assert_eq!(r.energy, Some(WattHours(987654.0 * 10.0)));
    }

    #[test]
    fn meter_power_keeps_its_sign() {
        let b = block(
            203,
            105,
            &[
                (16, 4998),
                (17, (-2i16) as u16),
                (18, (-150i16) as u16),
                (22, 1),
            ],
        );
        let r = decode(203, &b).unwrap();
        assert_eq!(r.power, Some(Watts(-1500.0)));
        let obs = r.observations(Role::GridMeter, Timestamp(1));
        assert_eq!(
            obs[0],
            Observation::Power {
                quantity: Quantity::GridPower,
                value: Watts(-1500.0),
                at: Timestamp(1)
            }
        );
    }

    #[test]
    fn sentinels_are_missing_points() {
        // W not implemented; Hz fine.
        let b = block(103, 50, &[(14, 0x8000), (16, 5000), (17, (-2i16) as u16)]);
        let r = decode(103, &b).unwrap();
        assert_eq!(r.power, None);
        assert_eq!(r.frequency, Some(Hertz(50.0)));
        assert_eq!(r.energy, None, "acc32 0 is 'not accumulated'");
        // Scale factor not implemented, or outside -10..=10.
        for sf in [0x8000u16, 11, (-11i16) as u16] {
            let b = block(103, 50, &[(14, 100), (15, sf)]);
            assert_eq!(decode(103, &b).unwrap().power, None, "sf {sf:#x}");
        }
        // Inverter Hz is uint16: 0xFFFF; meter Hz is int16: 0x8000.
        let b = block(101, 50, &[(16, 0xFFFF)]);
        assert_eq!(decode(101, &b).unwrap().frequency, None);
        let b = block(201, 105, &[(16, 0x8000)]);
        assert_eq!(decode(201, &b).unwrap().frequency, None);
        // 701: uint32 Hz 0xFFFFFFFF and uint64 energy all ones.
        let mut b = block(701, 153, &[(17, 0xFFFF), (18, 0xFFFF)]);
        b[19..23].fill(0xFFFF);
        let r = decode(701, &b).unwrap();
        assert_eq!((r.frequency, r.energy), (None, None));
        // Nothing implemented, nothing observed.
        assert!(AcReading::default()
            .observations(Role::Pv, Timestamp(0))
            .is_empty());
    }

    #[test]
    fn der_701_points() {
        let b = block(
            701,
            153,
            &[
                (10, 2500),
                (116, 0),
                (17, 0),
                (18, 50020),
                (115, (-3i16) as u16),
                (22, 1234),
                (120, 0),
            ],
        );
        let r = decode(701, &b).unwrap();
        assert_eq!(r.power, Some(Watts(2500.0)));
        assert_eq!(r.frequency, Some(Hertz(50020.0 * 0.001)));
        assert_eq!(r.energy, Some(WattHours(1234.0)));
    }

    #[test]
    fn inverter_standby_draw_is_zero_generation() {
        let r = AcReading {
            power: Some(Watts(-8.0)),
            ..Default::default()
        };
        assert_eq!(
            r.observations(Role::Wind, Timestamp(0)),
            vec![Observation::Power {
                quantity: Quantity::WindPower,
                value: Watts::ZERO,
                at: Timestamp(0)
            }]
        );
    }

    #[test]
    fn plans_pick_the_role_model_and_check_its_length() {
        let chain = [
            ModelHeader {
                id: 1,
                address: 40002,
                len: 66,
            },
            ModelHeader {
                id: 103,
                address: 40070,
                len: 50,
            },
            ModelHeader {
                id: 203,
                address: 40122,
                len: 105,
            },
        ];
        assert_eq!(plan(&chain, Role::Pv).unwrap().model.id, 103);
        assert_eq!(plan(&chain, Role::Pv).unwrap().count, 27);
        assert_eq!(plan(&chain, Role::GridMeter).unwrap().model.id, 203);
        assert!(matches!(
            plan(&chain[..2], Role::SiteLoad),
            Err(ModbusError::NoModel { .. })
        ));
        let short = [ModelHeader {
            id: 701,
            address: 40002,
            len: 50,
        }];
        assert!(matches!(
            plan(&short, Role::Pv),
            Err(ModbusError::ModelTooShort { needed: 119, .. })
        ));
        // A block whose ID register changed means the map moved: rediscover.
        assert!(decode(103, &block(101, 50, &[])).is_err());
    }
}
