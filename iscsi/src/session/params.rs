//! Operational parameters (RFC 7143 §13) and how each key is negotiated: the result
//! functions (min, max, OR, AND, list choice) applied to the initiator's offer and
//! this target's limits.

use super::TargetConfig;

/// The operational parameters of a connection and its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// HeaderDigest is CRC32C.
    pub header_digest: bool,
    /// DataDigest is CRC32C.
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the largest data segment we send.
    pub initiator_mrdsl: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength.
    pub first_burst_length: u32,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// DefaultTime2Wait.
    pub default_time2wait: u32,
    /// DefaultTime2Retain.
    pub default_time2retain: u32,
}

impl Default for Params {
    /// The RFC 7143 §13 defaults.
    fn default() -> Self {
        Params {
            header_digest: false,
            data_digest: false,
            initiator_mrdsl: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            default_time2wait: 2,
            default_time2retain: 20,
        }
    }
}

/// What the target answers to one key.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// key=value.
    Value(String),
    /// A declarative key: nothing to answer.
    None,
}

fn number(v: &str, lo: u32, hi: u32) -> Option<u32> {
    let n: u64 = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else {
        v.parse().ok()?
    };
    u32::try_from(n).ok().filter(|n| (lo..=hi).contains(n))
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yn(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

impl Params {
    /// Negotiates one operational key offered by the initiator; `None` when the key is
    /// not an operational key (the caller decides).
    pub fn negotiate(&mut self, key: &str, value: &str, ours: &TargetConfig) -> Option<Answer> {
        let reject = || Some(Answer::Value("Reject".into()));
        let answer = |s: String| Some(Answer::Value(s));
        match key {
            "HeaderDigest" | "DataDigest" => {
                // A list in the initiator's order of preference; we support both.
                let Some(pick) = value.split(',').find(|v| *v == "CRC32C" || *v == "None") else {
                    return reject();
                };
                let on = pick == "CRC32C";
                if key == "HeaderDigest" {
                    self.header_digest = on;
                } else {
                    self.data_digest = on;
                }
                answer(pick.to_owned())
            }
            "MaxRecvDataSegmentLength" => {
                let Some(n) = number(value, 512, (1 << 24) - 1) else {
                    return reject();
                };
                self.initiator_mrdsl = n;
                Some(Answer::None)
            }
            "MaxBurstLength" | "FirstBurstLength" => {
                let Some(n) = number(value, 512, (1 << 24) - 1) else {
                    return reject();
                };
                let mine = if key == "MaxBurstLength" {
                    ours.max_burst_length
                } else {
                    ours.first_burst_length
                };
                let n = n.min(mine);
                if key == "MaxBurstLength" {
                    self.max_burst_length = n;
                } else {
                    self.first_burst_length = n;
                }
                answer(n.to_string())
            }
            "InitialR2T" => {
                // OR: Yes wins; we take unsolicited data, so we agree with the offer.
                let Some(b) = yes_no(value) else {
                    return reject();
                };
                self.initial_r2t = b;
                answer(yn(b))
            }
            "ImmediateData" => {
                // AND: we accept immediate data, so the offer decides.
                let Some(b) = yes_no(value) else {
                    return reject();
                };
                self.immediate_data = b;
                answer(yn(b))
            }
            "DataPDUInOrder" | "DataSequenceInOrder" => {
                // OR with our Yes: always Yes (we take data in order only).
                yes_no(value)?;
                answer(yn(true))
            }
            "MaxOutstandingR2T" => {
                let Some(_) = number(value, 1, 65535) else {
                    return reject();
                };
                self.max_outstanding_r2t = 1;
                answer("1".into())
            }
            "MaxConnections" => {
                let Some(_) = number(value, 1, 65535) else {
                    return reject();
                };
                answer("1".into())
            }
            "ErrorRecoveryLevel" => {
                let Some(_) = number(value, 0, 2) else {
                    return reject();
                };
                answer("0".into())
            }
            "DefaultTime2Wait" => {
                let Some(n) = number(value, 0, 3600) else {
                    return reject();
                };
                self.default_time2wait = n.max(2);
                answer(self.default_time2wait.to_string())
            }
            "DefaultTime2Retain" => {
                let Some(_) = number(value, 0, 3600) else {
                    return reject();
                };
                // Min with our 0: at ErrorRecoveryLevel 0 nothing outlives a connection.
                self.default_time2retain = 0;
                answer(self.default_time2retain.to_string())
            }
            "IFMarker" | "OFMarker" => answer("No".into()),
            "OFMarkInt" | "IFMarkInt" => answer("Irrelevant".into()),
            _ => None,
        }
    }

    /// The values made final: FirstBurstLength may not exceed MaxBurstLength (§13.14).
    pub fn finish(&mut self) {
        self.first_burst_length = self.first_burst_length.min(self.max_burst_length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_functions() {
        let ours = TargetConfig::new("iqn.2026-01.test:t");
        let mut p = Params::default();
        assert_eq!(
            p.negotiate("HeaderDigest", "CRC32C,None", &ours),
            Some(Answer::Value("CRC32C".into()))
        );
        assert!(p.header_digest);
        assert_eq!(
            p.negotiate("MaxBurstLength", "16776192", &ours),
            Some(Answer::Value("1048576".into()))
        );
        assert_eq!(
            p.negotiate("FirstBurstLength", "bogus", &ours),
            Some(Answer::Value("Reject".into()))
        );
        assert_eq!(
            p.negotiate("InitialR2T", "No", &ours),
            Some(Answer::Value("No".into()))
        );
        assert_eq!(
            p.negotiate("MaxRecvDataSegmentLength", "65536", &ours),
            Some(Answer::None)
        );
        assert_eq!(p.initiator_mrdsl, 65536);
        assert_eq!(
            p.negotiate("ErrorRecoveryLevel", "2", &ours),
            Some(Answer::Value("0".into()))
        );
        assert_eq!(p.negotiate("X-com.example.Foo", "1", &ours), None);
    }
}
