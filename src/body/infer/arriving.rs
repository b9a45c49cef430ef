//! [`Arriving`]: an inference request's body decoded as its frames arrive, so that a binary
//! input is copied once, from the frame into its values, and the body is never held whole.
//!
//! Its JSON is kept until it is complete, then read for the inputs' places in the binary
//! data; each binary input's bytes then go straight into its buffer (`FP32`, `FP64`,
//! `INT64` decoded as they come; `FP16`, `BF16` and `BYTES` kept as bytes and decoded with
//! the rest). Bytes nothing asks for are counted, not kept. [`Arriving::finish`] then reads
//! the JSON again (it is small) and decodes the request as [`super::decode`] does a whole
//! body, with the same answers and errors.
//!
//! Used for bodies that declare their length, are not compressed and give
//! `Inference-Header-Content-Length` of at most [`MAX_JSON`] bytes; others are read whole.

use std::borrow::Cow;

use super::{InferRequest, Signature, Source, Taken, past_the_end, plan, walk};
use crate::admission::{Refusal, Reservation, estimate};
use crate::body::{BodyHead, Sink};
use crate::error::ApiError;
use crate::tensor::all_finite;
use crate::tensor::typed::{self, Datatype, Values};

/// The longest JSON read as the body arrives, in bytes: it is read on the runtime, twice.
pub const MAX_JSON: usize = 64 << 10;

/// A body being decoded as it arrives.
#[derive(Debug)]
pub struct Arriving {
    /// The length of its JSON (`Inference-Header-Content-Length`).
    json_length: usize,
    names: Signature,
    /// The most bytes the body holds: its declared length.
    declared: usize,
    /// The JSON, as far as it has arrived.
    json: Vec<u8>,
    /// Whether the inputs' places have been read from the JSON (once it was complete).
    placed: bool,
    /// The binary inputs, in the order of their data.
    slots: Vec<Slot>,
    /// The first slot not yet full.
    next: usize,
    /// The bytes of an element split between two frames.
    split: Split,
    /// Bytes received.
    received: usize,
}

/// One binary input's place in the body and its values as they arrive.
#[derive(Debug)]
struct Slot {
    size: usize,
    taken: usize,
    fill: Fill,
    /// Whether its float values so far are all finite, checked as each frame's arrived.
    finite: bool,
}

/// What a binary input's bytes become.
#[derive(Debug)]
enum Fill {
    /// `FP32` values.
    Fp32(Vec<f32>),
    /// `FP64` values, rounded to `f32`.
    Fp64(Vec<f32>),
    /// `INT64` values.
    Int64(Vec<i64>),
    /// Bytes, decoded once all have arrived.
    Bytes(Vec<u8>),
    /// Not kept: its size is not what its shape needs, or the body cannot hold it.
    Dropped,
}

/// The first bytes of an element whose rest is in the next frame.
#[derive(Debug, Default)]
struct Split {
    bytes: [u8; 8],
    len: usize,
}

impl Arriving {
    /// The decoder of a body of `head` whose JSON is `json_length` bytes, for a model with
    /// `names`, when the body is decoded as it arrives: it declares its length, is not
    /// compressed and its JSON is at most [`MAX_JSON`] bytes.
    pub fn for_body(head: BodyHead, json_length: Option<usize>, names: Signature) -> Option<Self> {
        match (head.coding, head.declared, json_length) {
            (None, Some(declared), Some(json_length)) if json_length <= MAX_JSON => {
                Some(Arriving::new(json_length, names, declared))
            }
            _ => None,
        }
    }

    /// A body of `declared` bytes whose JSON is `json_length` bytes, for a model with `names`.
    fn new(json_length: usize, names: Signature, declared: usize) -> Self {
        Arriving {
            json_length,
            names,
            declared,
            json: Vec::new(),
            placed: false,
            slots: Vec::new(),
            next: 0,
            split: Split::default(),
            received: 0,
        }
    }

    /// Reads the inputs' places from the complete JSON and makes each binary input's
    /// buffer, charging `reservation` for them. A JSON that is wrong places nothing:
    /// [`Arriving::finish`] tells why.
    ///
    /// Reading the JSON holds what decoding a whole body's JSON may (its share of
    /// [`estimate::parse`] and [`estimate::INFER_FIELDS`]): reserved while it is read, on top
    /// of what the body holds.
    fn place(&mut self, reservation: &mut Reservation) -> Result<(), Refusal> {
        self.placed = true;
        let before = reservation.bytes();
        reservation
            .grow(estimate::parse(self.json.len()).saturating_add(estimate::INFER_FIELDS))?;
        let Ok(plan) = plan(&self.json, self.names, None) else {
            return reservation.set(before);
        };
        let room = self.declared.saturating_sub(self.json_length);
        let mut end = 0usize;
        let mut held = self.json.capacity();
        for input in &plan.inputs {
            let Source::Binary(size) = input.source else {
                continue;
            };
            end = end.saturating_add(size);
            let count = typed::check_size(input.name, input.datatype, &input.shape, size);
            let (fill, bytes) = match count {
                // Past the declared length, or not the shape's size: an error for
                // `finish` to give.
                Ok(_) if end > room => (Fill::Dropped, 0),
                Err(_) => (Fill::Dropped, 0),
                Ok(count) => match input.datatype {
                    Datatype::Fp32 => (Fill::Fp32(Vec::new()), count * 4),
                    Datatype::Fp64 => (Fill::Fp64(Vec::new()), count * 4),
                    Datatype::Int64 => (Fill::Int64(Vec::new()), count * 8),
                    Datatype::Fp16 | Datatype::Bf16 | Datatype::Bytes => {
                        (Fill::Bytes(Vec::new()), size)
                    }
                },
            };
            held = held.saturating_add(bytes);
            if held > reservation.bytes() {
                reservation.set(held)?;
            }
            self.slots.push(Slot {
                size,
                taken: 0,
                fill: fill.with_capacity(bytes),
                finite: true,
            });
        }
        drop(plan);
        reservation.set(before.max(held))
    }

    /// Decodes the request, as [`super::decode`] would the whole body. CPU work: its JSON
    /// is read again, and inputs kept as bytes are decoded.
    pub fn finish(mut self) -> Result<InferRequest, ApiError> {
        if self.received != self.declared {
            // The server's HTTP layer gives exactly the declared length; the inputs were
            // placed on that.
            return Err(ApiError::MalformedJson(format!(
                "the body holds {} bytes, Content-Length declared {}",
                self.received, self.declared
            )));
        }
        if self.received < self.json_length {
            return Err(past_the_end(self.json_length, self.received));
        }
        let binary_len = self.received - self.json_length;
        let plan = plan(&self.json, self.names, None)?;
        let mut slots = self.slots.iter_mut();
        walk(plan, binary_len, true, |_, _| match slots.next() {
            Some(slot) => std::mem::replace(&mut slot.fill, Fill::Dropped).taken(slot.finite),
            None => Taken::Missing,
        })
    }
}

impl Fill {
    /// The same fill, its buffer made to hold `bytes` bytes.
    fn with_capacity(self, bytes: usize) -> Self {
        match self {
            Fill::Fp32(_) => Fill::Fp32(Vec::with_capacity(bytes / 4)),
            Fill::Fp64(_) => Fill::Fp64(Vec::with_capacity(bytes / 4)),
            Fill::Int64(_) => Fill::Int64(Vec::with_capacity(bytes / 8)),
            Fill::Bytes(_) => Fill::Bytes(Vec::with_capacity(bytes)),
            Fill::Dropped => Fill::Dropped,
        }
    }

    /// Takes the input's next `data`, noting in `finite` whether the floats it makes are
    /// finite (checked now, while they are in cache).
    fn push(&mut self, data: &[u8], split: &mut Split, finite: &mut bool) {
        match self {
            Fill::Fp32(values) => {
                let start = values.len();
                push_each(values, split, data, f32::from_le_bytes);
                *finite &= all_finite(&values[start..]);
            }
            Fill::Fp64(values) => {
                let start = values.len();
                push_each(values, split, data, typed::fp64_value);
                *finite &= all_finite(&values[start..]);
            }
            Fill::Int64(values) => push_each(values, split, data, i64::from_le_bytes),
            Fill::Bytes(bytes) => bytes.extend_from_slice(data),
            Fill::Dropped => {}
        }
    }

    /// What the walk takes for the input, its floats `finite` or not.
    fn taken(self, finite: bool) -> Taken<'static> {
        match self {
            Fill::Fp32(values) | Fill::Fp64(values) => Taken::Values {
                values: Values::Floats(values),
                finite,
            },
            Fill::Int64(values) => Taken::Values {
                values: Values::Ints(values),
                finite: false,
            },
            Fill::Bytes(bytes) => Taken::Bytes(Cow::Owned(bytes)),
            Fill::Dropped => Taken::Missing,
        }
    }
}

/// Converts each whole `N`-byte element of `data` into `out`, the element `split` began
/// first; the bytes of a last element cut short are kept in `split`.
fn push_each<const N: usize, T>(
    out: &mut Vec<T>,
    split: &mut Split,
    mut data: &[u8],
    convert: impl Fn([u8; N]) -> T,
) {
    if split.len > 0 {
        let more = (N - split.len).min(data.len());
        split.bytes[split.len..split.len + more].copy_from_slice(&data[..more]);
        split.len += more;
        data = &data[more..];
        if split.len < N {
            return;
        }
        let mut element = [0; N];
        element.copy_from_slice(&split.bytes[..N]);
        out.push(convert(element));
        split.len = 0;
    }
    let (elements, rest) = data.as_chunks::<N>();
    out.extend(elements.iter().map(|&element| convert(element)));
    split.bytes[..rest.len()].copy_from_slice(rest);
    split.len = rest.len();
}

impl Sink for Arriving {
    fn take(&mut self, mut data: &[u8], reservation: &mut Reservation) -> Result<(), Refusal> {
        self.received = self.received.saturating_add(data.len());
        // A JSON longer than the body is refused once the body has ended: it is kept only
        // as far as the declared length goes.
        let json_room = self.json_length.min(self.declared);
        if self.json.len() < json_room {
            if self.json.capacity() == 0 {
                if json_room > reservation.bytes() {
                    reservation.set(json_room)?;
                }
                self.json.reserve_exact(json_room);
            }
            let more = (json_room - self.json.len()).min(data.len());
            self.json.extend_from_slice(&data[..more]);
            data = &data[more..];
        }
        if !self.placed && self.json.len() == self.json_length {
            self.place(reservation)?;
        }
        while !data.is_empty() {
            let Some(slot) = self.slots.get_mut(self.next) else {
                // Past the inputs: counted, for `finish` to refuse.
                break;
            };
            let more = (slot.size - slot.taken).min(data.len());
            slot.fill
                .push(&data[..more], &mut self.split, &mut slot.finite);
            slot.taken += more;
            data = &data[more..];
            if slot.taken == slot.size {
                self.next += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::admission::Admission;
    use crate::body::infer::decode;
    use crate::body::infer::tests::spec;

    const NAMES: Signature = Signature {
        inputs: &[spec("a"), spec("b"), spec("c")],
        outputs: &[spec("scores")],
    };

    /// Bytes `sink` holds now.
    fn held(sink: &Arriving) -> usize {
        let fills = sink.slots.iter().map(|slot| match &slot.fill {
            Fill::Fp32(values) | Fill::Fp64(values) => values.capacity() * 4,
            Fill::Int64(values) => values.capacity() * 8,
            Fill::Bytes(bytes) => bytes.capacity(),
            Fill::Dropped => 0,
        });
        sink.json.capacity() + fills.sum::<usize>()
    }

    /// `count` `BYTES` elements: each a little-endian length and its text.
    fn strings(count: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..count {
            let text = format!("id{i}");
            out.extend((text.len() as u32).to_le_bytes());
            out.extend(text.bytes());
        }
        out
    }

    /// `body` fed as it arrives in frames cut at `cuts`, declaring `declared` bytes; checks
    /// that no more than the declared length was reserved.
    fn fed(body: &[u8], json_length: usize, declared: usize, cuts: &[usize]) -> Arriving {
        let admission = Admission::new(1, 0, usize::MAX);
        let mut reservation = admission.reservation();
        reservation.set(declared).unwrap();
        let head = BodyHead {
            coding: None,
            declared: Some(declared),
        };
        let mut sink = Arriving::for_body(head, Some(json_length), NAMES).unwrap();
        let mut at = 0;
        for &cut in cuts.iter().chain([&body.len()]) {
            let cut = cut.clamp(at, body.len());
            sink.take(&body[at..cut], &mut reservation).unwrap();
            at = cut;
            assert!(
                held(&sink) <= reservation.bytes(),
                "held past the reservation"
            );
        }
        assert!(
            reservation.bytes() <= declared,
            "{} reserved for a body of {declared}",
            reservation.bytes()
        );
        sink
    }

    /// `body` decoded as it arrives in frames cut at `cuts`, declaring `declared` bytes.
    fn arriving(body: &[u8], json_length: usize, declared: usize, cuts: &[usize]) -> String {
        described(fed(body, json_length, declared, cuts).finish())
    }

    /// A decoded request as text, inputs known finite checked to be so, and then not told
    /// apart from the others (one way may know what the other checks later).
    fn described(mut got: Result<InferRequest, ApiError>) -> String {
        for input in got.iter_mut().flat_map(|request| request.inputs.iter_mut()) {
            if input.finite {
                assert!(
                    matches!(&input.values, Values::Floats(values) if all_finite(values)),
                    "{input:?}"
                );
            }
            input.finite = false;
        }
        format!("{got:?}")
    }

    /// Whether each input of `body`, decoded as it arrives in frames cut at `cuts`, is known
    /// to be finite.
    fn arriving_known_finite(body: &[u8], json_length: usize, cuts: &[usize]) -> Vec<bool> {
        let request = fed(body, json_length, body.len(), cuts).finish().unwrap();
        request.inputs.iter().map(|input| input.finite).collect()
    }

    /// `body` decoded whole.
    fn whole(body: &[u8], json_length: usize) -> String {
        described(decode(
            None,
            body,
            &Default::default(),
            usize::MAX,
            Some(json_length),
            NAMES,
        ))
    }

    /// An input of the JSON: its name, datatype, shape and either its binary size or its
    /// JSON data.
    fn input() -> impl Strategy<Value = serde_json::Value> {
        let name = prop::sample::select(vec!["a", "b", "c", "d"]);
        let datatype = prop::sample::select(vec!["FP32", "FP64", "FP16", "BF16", "INT64", "BYTES"]);
        let shape = prop::collection::vec(0usize..5, 0..3);
        (name, datatype, shape, prop::option::of(0usize..80)).prop_map(
            |(name, datatype, shape, size)| match size {
                Some(size) => json!({"name": name, "datatype": datatype, "shape": shape,
                                     "parameters": {"binary_data_size": size}}),
                None => json!({"name": name, "datatype": datatype, "shape": [2],
                               "data": [1.5, -2]}),
            },
        )
    }

    /// Run with more cases by `PROPTEST_CASES=3000 cargo test properties` (CI does).
    mod properties {
        use super::*;

        proptest! {
            #[test]
            fn a_body_decoded_as_it_arrives_is_what_it_is_decoded_whole(
                inputs in prop::collection::vec(input(), 0..4),
                fitted in any::<bool>(),
                binary in prop::collection::vec(any::<u8>(), 0..200),
                cuts in prop::collection::vec(0usize..400, 0..12),
                json_cut in 0usize..6,
                short in prop::sample::select(vec![0usize, 0, 0, 1, 5]),
            ) {
                let mut inputs = inputs;
                let mut binary = binary;
                if fitted {
                    // Inputs of the model, each once, sizes that fit their shapes, and the
                    // binary data they add up to (strings well-formed).
                    inputs.truncate(3);
                    let mut data = Vec::new();
                    for (input, name) in inputs.iter_mut().zip(["a", "b", "c"]) {
                        input["name"] = json!(name);
                        if input["parameters"].is_object() {
                            let count: usize = input["shape"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|n| n.as_u64().unwrap() as usize)
                                .product();
                            let own = match input["datatype"].as_str().unwrap() {
                                "FP16" | "BF16" => vec![7; 2 * count],
                                "FP32" => vec![7; 4 * count],
                                "BYTES" => strings(count),
                                _ => vec![7; 8 * count],
                            };
                            input["parameters"]["binary_data_size"] = json!(own.len());
                            data.extend(own);
                        }
                    }
                    data.truncate(data.len().saturating_sub(short));
                    binary = data;
                }
                let mut body = json!({"inputs": inputs, "id": "x",
                                      "outputs": [{"name": "scores"}]})
                    .to_string()
                    .into_bytes();
                // Sometimes a JSON cut short, or longer than its length says.
                let json_length = match json_cut {
                    0 => body.len() / 2,
                    1 => body.len() + 3,
                    _ => body.len(),
                };
                body.extend_from_slice(&binary);
                let mut cuts = cuts;
                cuts.sort_unstable();
                let got = arriving(&body, json_length, body.len(), &cuts);
                prop_assert_eq!(got, whole(&body, json_length));
            }
        }
    }

    #[test]
    fn values_split_between_frames_are_decoded_whole() {
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 1.25 - 3.0).collect();
        let b: Vec<f64> = (0..6).map(|i| f64::from(i) * 0.5 + 1e-9).collect();
        let c: Vec<i64> = vec![1, -2, i64::MAX];
        let json = json!({"inputs": [
            {"name": "a", "datatype": "FP32", "shape": [3, 4],
             "parameters": {"binary_data_size": 48}},
            {"name": "b", "datatype": "FP64", "shape": [6],
             "parameters": {"binary_data_size": 48}},
            {"name": "c", "datatype": "INT64", "shape": [3],
             "parameters": {"binary_data_size": 24}}]})
        .to_string();
        let mut body = json.clone().into_bytes();
        body.extend(a.iter().flat_map(|v| v.to_le_bytes()));
        body.extend(b.iter().flat_map(|v| v.to_le_bytes()));
        body.extend(c.iter().flat_map(|v| v.to_le_bytes()));
        for frame in [1, 3, 5, 7, 13] {
            let cuts: Vec<usize> = (frame..body.len()).step_by(frame).collect();
            let known = arriving_known_finite(&body, json.len(), &cuts);
            assert_eq!(known, [true, true, false], "frames of {frame}");
            let got = arriving(&body, json.len(), body.len(), &cuts);
            assert_eq!(got, whole(&body, json.len()), "frames of {frame}");
            let want_b: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            for want in [format!("{a:?}"), format!("{want_b:?}"), format!("{c:?}")] {
                assert!(got.contains(&want), "frames of {frame}: {got}");
            }
        }
    }

    #[test]
    fn a_json_length_past_a_short_body_reserves_no_more_than_the_body() {
        let admission = Admission::new(1, 0, 1000);
        let mut reservation = admission.reservation();
        reservation.set(10).unwrap();
        let head = BodyHead {
            coding: None,
            declared: Some(10),
        };
        let mut sink = Arriving::for_body(head, Some(MAX_JSON), NAMES).unwrap();
        assert_eq!(sink.take(b"{\"inputs\":", &mut reservation), Ok(()));
        assert_eq!(reservation.bytes(), 10);
        let got = format!("{:?}", sink.finish());
        assert_eq!(got, whole(b"{\"inputs\":", MAX_JSON));
    }

    #[test]
    fn a_body_longer_or_shorter_than_declared_is_refused() {
        let body = br#"{"inputs": []}"#;
        for declared in [body.len() - 1, body.len() + 1] {
            let got = format!("{:?}", fed(body, body.len(), declared, &[]).finish());
            assert!(got.contains("Content-Length declared"), "{got}");
        }
    }

    #[test]
    fn sizes_past_the_declared_length_are_not_allocated() {
        let json = json!({"inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1 << 28],
             "parameters": {"binary_data_size": 1usize << 30}}]})
        .to_string();
        let mut body = json.clone().into_bytes();
        body.extend([0; 16]);
        let got = arriving(&body, json.len(), body.len(), &[]);
        assert!(got.contains("runs past the end of the body"), "{got}");
        assert_eq!(got, whole(&body, json.len()));
    }
}
