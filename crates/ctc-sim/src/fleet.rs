//! Many simulated gateways in one process, one port each.

use std::io;

use ctc::CertificatePin;

use crate::config::SimConfig;
use crate::gateway::{Fault, SimGateway, SimHandle};

/// A set of simulated gateways started from one template.
#[derive(Debug)]
pub struct SimFleet {
    gateways: Vec<SimHandle>,
}

impl SimFleet {
    /// Starts `count` gateways on `base_port`, `base_port + 1`, … (`base_port` 0: each on any
    /// free port). Gateway `i` gets the template's sensors with `i × serial_stride` added to
    /// their serials, so that serials can be unique across the fleet.
    pub async fn start(count: usize, base_port: u16, template: &SimConfig, serial_stride: u64) -> io::Result<SimFleet> {
        let mut gateways = Vec::with_capacity(count);
        for index in 0..count {
            let mut config = template.clone();
            config.port = if base_port == 0 {
                0
            } else {
                u16::try_from(usize::from(base_port) + index).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{count} gateways from port {base_port} run past port 65535"),
                    )
                })?
            };
            for sensor in &mut config.sensors {
                sensor.serial += index as u64 * serial_stride;
            }
            let gateway = SimGateway::start(config).await.map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("gateway {index} (port {}): {error}", usize::from(base_port) + index),
                )
            })?;
            gateways.push(gateway);
        }
        Ok(SimFleet { gateways })
    }

    pub fn gateways(&self) -> &[SimHandle] {
        &self.gateways
    }

    pub fn urls(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.url().to_owned()).collect()
    }

    /// The fingerprint of the certificate every gateway serves (with TLS; one per template).
    pub fn tls_pin(&self) -> Option<CertificatePin> {
        self.gateways.first().and_then(SimHandle::tls_pin)
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// Cuts every connection of every gateway at once (a plant-wide network blip).
    pub fn drop_all_connections(&self) {
        self.gateways.iter().for_each(SimHandle::drop_connections);
    }

    pub fn set_fault_all(&self, fault: Fault) {
        for gateway in &self.gateways {
            gateway.set_fault(fault.clone());
        }
    }

    pub fn clear_faults_all(&self) {
        self.gateways.iter().for_each(SimHandle::clear_faults);
    }

    /// Open connections across the fleet.
    pub fn connections(&self) -> usize {
        self.gateways.iter().map(SimHandle::connections).sum()
    }

    /// The most sessions any one gateway had at once.
    pub fn peak_sessions(&self) -> usize {
        self.gateways.iter().map(SimHandle::peak_sessions).max().unwrap_or(0)
    }

    pub fn shutdown(&self) {
        self.gateways.iter().for_each(SimHandle::shutdown);
    }
}
