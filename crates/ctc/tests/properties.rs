//! Property tests of frame parsing and waveform decoding.

use ctc::frame::{parse_inbound, parse_sensor_list, Command, Inbound, IntOrString};
use ctc::waveform::{
    decode_axis, decode_waveform, encode_axis, Axis, AxisStats, DecodeOptions, Encoding, WaveformError,
};
use ctc::{Credentials, Serial};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn flexible(value: i64, as_text: bool) -> Value {
    if as_text {
        Value::from(value.to_string())
    } else {
        Value::from(value)
    }
}

/// Sample values as a gateway could send them: up to 4 decimals, within ±200 g.
fn samples() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-2_000_000i32..=2_000_000, 1..300)
        .prop_map(|raw| raw.into_iter().map(|v| v as f32 / 10_000.0).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_frame_parser(text in ".{0,200}") {
        let _ = parse_inbound(&text);
    }

    #[test]
    fn arbitrary_json_envelopes_never_panic(
        frame_type in prop::sample::select(vec![
            "RTN_LOGIN", "RTN_DYN", "RTN_ERR", "RTN_NEW", "NOT_DYN_READING_STARTED",
            "NOT_DYN_READING", "NOT_DYN_TEMP", "NOT_NEW", "OTHER",
        ]),
        data in prop_oneof![
            Just(json!(null)), Just(json!([])), Just(json!({})), any::<i64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
            (any::<u32>(), any::<bool>(), ".{0,10}").prop_map(|(serial, as_text, text)| json!({
                "Serial": flexible(serial.into(), as_text), "Success": as_text, "Temp": serial,
                "X": text, "Y": "1", "Z": "2", "Error": text, "Attempt": null,
            })),
        ],
        target_key in prop::sample::select(vec!["Target", "To"]),
    ) {
        let frame = json!({"Type": frame_type, "From": "SERV", target_key: "UI", "Data": data});
        let _ = parse_inbound(&frame.to_string());
    }

    #[test]
    fn serials_are_read_from_integers_and_strings(serial in any::<u64>(), as_text in any::<bool>(), pad in " {0,2}") {
        let value = if as_text { Value::from(format!("{pad}{serial}{pad}")) } else { Value::from(serial) };
        prop_assert_eq!(Serial::from_json(&value), Some(Serial(serial)));
        let frame = json!({"Type": "NOT_DYN_TEMP", "From": "SERV", "Target": "UI",
                           "Data": {"Serial": value, "Temp": 20.5}});
        match parse_inbound(&frame.to_string()).unwrap() {
            Inbound::Temperature(temp) => prop_assert_eq!(temp.serial, Serial(serial)),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn every_sensor_entry_is_kept_whatever_the_field_types(
        entries in prop::collection::btree_map(1u64..1_000_000, (any::<i32>(), any::<bool>(), any::<bool>(), any::<bool>()), 0..12)
    ) {
        let mut data = Map::new();
        for (serial, (value, ap_text, g_text, f_text)) in &entries {
            data.insert(serial.to_string(), json!({
                "Serial": serial, "Connected": 1, "PartNum": "P", "ReadRate": 25600, "Samples": 6400,
                "AccessPoint": flexible((*value).into(), *ap_text),
                "GMode": flexible((*value).into(), *g_text),
                "FreqMode": flexible((*value).into(), *f_text),
                "Extra": value,
            }));
        }
        let data = if entries.is_empty() { json!([]) } else { Value::Object(data) };
        let list = parse_sensor_list(&data).unwrap();
        prop_assert!(list.skipped.is_empty());
        let serials: Vec<u64> = list.sensors.iter().map(|s| s.serial.0).collect();
        let expected: Vec<u64> = entries.keys().copied().collect();
        prop_assert_eq!(serials, expected);
        for sensor in &list.sensors {
            let (value, ap_text, _, _) = entries[&sensor.serial.0];
            let expected = if ap_text { IntOrString::Text(value.to_string()) } else { IntOrString::Int(value.into()) };
            prop_assert_eq!(sensor.access_point.as_ref(), Some(&expected));
            prop_assert_eq!(sensor.extra.get("Extra"), Some(&json!(value)));
        }
    }

    #[test]
    fn login_frames_are_the_strict_envelope_for_any_credentials(email in ".{0,40}", password in ".{0,40}") {
        let text = Command::Login(Credentials::new(email.clone(), password.clone())).to_json();
        let prefix = r#"{"Type":"POST_LOGIN","From":"UI","To":"SERV","Data":{"Email":"#;
        prop_assert!(text.starts_with(prefix), "{}", text);
        let value: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(value.as_object().unwrap().len(), 4);
        prop_assert_eq!(&value["Data"], &json!({"Email": email, "Password": password}));
    }

    #[test]
    fn csv_and_json_decode_exactly_like_std_parse(samples in samples(), decimals in 0usize..6, json in any::<bool>()) {
        let encoding = if json { Encoding::JsonArray } else { Encoding::Csv };
        let text = encode_axis(encoding, &samples, decimals);
        let inner = text.trim_start_matches('[').trim_end_matches(']');
        let expected: Vec<f32> = inner.split(',').map(|token| token.parse().unwrap()).collect();
        let options = DecodeOptions { expected_samples: Some(samples.len()), max_abs: None };
        let decoded = decode_waveform(&text, &text, &text, &options).unwrap();
        prop_assert_eq!(decoded.encoding, encoding);
        prop_assert_eq!(&decoded.x.samples, &expected);
        prop_assert_eq!(&decoded.z.samples, &expected);
    }

    #[test]
    fn long_and_exponent_tokens_match_std_parse(values in prop::collection::vec(any::<f32>().prop_filter("finite", |v| v.is_finite()), 1..50)) {
        // Shortest round-trip formatting produces long mantissas and exponents: the slow path.
        let text: Vec<String> = values.iter().map(|v| format!("{v:e}")).collect();
        let text = text.join(",");
        let options = DecodeOptions { expected_samples: None, max_abs: None };
        let decoded = decode_axis(Encoding::Csv, Axis::X, &text, &options).unwrap();
        prop_assert_eq!(decoded, values);
    }

    #[test]
    fn base64_int16_round_trips(raw in prop::collection::vec(any::<i16>(), 1..300)) {
        let samples: Vec<f32> = raw.iter().map(|&v| f32::from(v) / 1000.0).collect();
        let text = encode_axis(Encoding::Base64Int16, &samples, 0);
        let options = DecodeOptions { expected_samples: Some(raw.len()), max_abs: None };
        let decoded = decode_waveform(&text, &text, &text, &options).unwrap();
        prop_assert_eq!(decoded.encoding, Encoding::Base64Int16);
        prop_assert_eq!(decoded.y.samples, samples);
    }

    #[test]
    fn a_bad_token_is_reported_at_its_axis_and_position(
        samples in samples(), position_seed in any::<usize>(),
        bad in prop::sample::select(vec!["abc", "", "1.2.3", "--1", "0x10", "1e", "nul", "1 2"]),
        axis_index in 0usize..3,
    ) {
        let good = encode_axis(Encoding::Csv, &samples, 4);
        let mut tokens: Vec<String> = good.split(',').map(str::to_owned).collect();
        let position = position_seed % tokens.len();
        tokens[position] = bad.to_owned();
        let broken = tokens.join(",");
        let mut axes = [good.as_str(); 3];
        axes[axis_index] = &broken;
        let axis = [Axis::X, Axis::Y, Axis::Z][axis_index];
        let error = decode_waveform(axes[0], axes[1], axes[2], &DecodeOptions::default()).unwrap_err();
        let is_trailing_empty = bad.is_empty() && position == tokens.len() - 1 && tokens.len() > 1;
        if bad.is_empty() && tokens.len() == 1 {
            prop_assert_eq!(error, WaveformError::Empty { axis });
        } else if is_trailing_empty {
            // "1,2," is a tolerated trailing comma: the axis is one sample short instead.
            prop_assert!(matches!(error, WaveformError::LengthMismatch { .. }), "{}", error);
        } else {
            prop_assert_eq!(error, WaveformError::BadToken { axis, position, token: bad.to_owned() });
        }
    }

    #[test]
    fn a_count_other_than_samples_is_rejected(samples in samples(), extra in 1usize..3) {
        let text = encode_axis(Encoding::Csv, &samples, 4);
        let options = DecodeOptions::expecting(Some(samples.len() + extra));
        let error = decode_waveform(&text, &text, &text, &options).unwrap_err();
        prop_assert_eq!(error, WaveformError::CountMismatch { axis: Axis::X, expected: samples.len() + extra, actual: samples.len() });
    }

    #[test]
    fn arbitrary_axis_text_never_panics(x in ".{0,64}", y in "[0-9,.\\-+eE ]{0,64}", z in "[A-Za-z0-9+/=\\[\\],]{0,64}") {
        let _ = decode_waveform(&x, &y, &z, &DecodeOptions::default());
        let _ = decode_waveform(&z, &z, &z, &DecodeOptions::default());
        let _ = decode_waveform(&y, &y, &y, &DecodeOptions::default());
    }

    #[test]
    fn statistics_are_consistent(samples in samples()) {
        let stats = AxisStats::of(&samples);
        prop_assert_eq!(stats.count, samples.len());
        prop_assert!(stats.min <= stats.mean + 1e-9 && stats.mean <= stats.max + 1e-9);
        prop_assert!(stats.rms + 1e-9 >= stats.mean.abs());
        prop_assert_eq!(stats.peak, stats.min.abs().max(stats.max.abs()));
        if stats.rms > 0.0 {
            prop_assert!(stats.crest_factor >= 1.0 - 1e-9);
            prop_assert!((stats.crest_factor - stats.peak / stats.rms).abs() < 1e-12);
        }
    }
}
