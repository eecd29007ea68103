//! The scheduling operations, as plain data.

use std::collections::HashMap;

use fhir_sdk::r4b::codes::{AppointmentStatus as FhirAppointmentStatus, SlotStatus};
use fhir_sdk::r4b::resources::{Appointment as FhirAppointment, Slot as FhirSlot};
use serde_json::{Value, json};

use crate::auth::urlencode;
use crate::{FhirClient, FhirError};

/// A patient record as the phone line needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct PatientInfo {
    pub id: String,
    pub given: String,
    pub family: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// Digits only.
    pub phones: Vec<String>,
}

impl std::fmt::Debug for PatientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientInfo(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub id: String,
    /// RFC 3339.
    pub start: String,
    pub end: String,
    pub status: String,
    pub schedule_id: Option<String>,
    pub practitioner_id: Option<String>,
    pub practitioner_name: Option<String>,
    pub location_name: Option<String>,
    pub service_type: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct AppointmentInfo {
    pub id: String,
    pub status: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub slot_id: Option<String>,
    pub practitioner_name: Option<String>,
    pub location_name: Option<String>,
}

impl std::fmt::Debug for AppointmentInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppointmentInfo")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Which free slots to look for.
#[derive(Debug, Clone, Default)]
pub struct SlotSearch {
    /// Practitioner id, or part of a practitioner's name (case-insensitive).
    pub practitioner: Option<String>,
    pub service_type: Option<String>,
    pub location: Option<String>,
    /// RFC 3339 bounds.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub enum Rescheduled {
    Moved(AppointmentInfo),
    /// The new slot was taken; nothing changed.
    SlotTaken,
    /// The old appointment could not be cancelled, so the new booking was undone.
    RolledBack,
}

#[derive(Debug, Clone)]
pub enum Booking {
    Booked(AppointmentInfo),
    /// The slot is no longer free (someone else booked it, or it never was).
    SlotTaken,
}

/// A schedule and whom it belongs to.
struct ScheduleOwner {
    schedule_id: String,
    practitioner_id: Option<String>,
    practitioner_name: Option<String>,
    location: Option<String>,
}

/// The names of a reference's target, looked up once per operation.
struct Names {
    cache: HashMap<String, Option<String>>,
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn reference_id(reference: &Value, resource_type: &str) -> Option<String> {
    let r = reference["reference"].as_str()?;
    let mut parts = r.trim_end_matches('/').rsplit('/');
    let id = parts.next()?;
    let ty = parts.next()?;
    (ty == resource_type).then(|| id.to_string())
}

fn human_name(resource: &Value) -> Option<String> {
    let name = resource["name"].as_array()?.first()?;
    if let Some(text) = name["text"].as_str() {
        return Some(text.to_string());
    }
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let prefix: Vec<&str> = name["prefix"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = name["family"].as_str().unwrap_or_default();
    let full = [prefix.join(" "), given.join(" "), family.to_string()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!full.is_empty()).then_some(full)
}

/// Resources in a search Bundle, each with its search mode.
fn bundle_entries(bundle: &Value) -> Result<Vec<(&Value, &str)>, FhirError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(FhirError::Malformed(
            "search did not return a Bundle".into(),
        ));
    }
    Ok(bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["resource"].is_object())
                .map(|e| {
                    (
                        &e["resource"],
                        e["search"]["mode"].as_str().unwrap_or("match"),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(String::from)
}

fn patient_from(resource: &Value) -> Option<PatientInfo> {
    let name = resource["name"].as_array()?.first()?;
    Some(PatientInfo {
        id: resource["id"].as_str()?.to_string(),
        given: name["given"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        family: name["family"].as_str().unwrap_or_default().to_string(),
        birth_date: resource["birthDate"].as_str().map(String::from),
        phones: resource["telecom"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter(|c| c["system"] == "phone" || c["system"].is_null())
                    .filter_map(|c| c["value"].as_str())
                    .map(digits)
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl FhirClient {
    /// Follows `next` links, collecting at most `max` pages.
    async fn search_pages(&self, first: &str, max_pages: usize) -> Result<Vec<Value>, FhirError> {
        let mut pages = vec![self.get_json(first).await?];
        while pages.len() < max_pages {
            let Some(next) = next_link(pages.last().expect("one page")) else {
                break;
            };
            // The next link is absolute; keep the part after our base URL (fhir-sdk also refuses
            // other origins, so a hostile link cannot send our token elsewhere).
            let Some(relative) = next.strip_prefix(&self.base_url) else {
                return Err(FhirError::Malformed(
                    "paging link points outside the FHIR base URL".into(),
                ));
            };
            pages.push(self.get_json(relative).await?);
        }
        Ok(pages)
    }

    /// Patients with this family name and birth date (and given name, checked here because
    /// servers differ in how they match it). Phone narrows the result when given.
    pub async fn find_patients(
        &self,
        family: &str,
        given: &str,
        birth_date: &str,
        phone: Option<&str>,
    ) -> Result<Vec<PatientInfo>, FhirError> {
        let query = format!(
            "Patient?family={}&birthdate={}&_count=20",
            urlencode(family),
            urlencode(birth_date)
        );
        let pages = self.search_pages(&query, 3).await?;
        let wanted_given = given.trim().to_lowercase();
        let wanted_family = family.trim().to_lowercase();
        let wanted_phone = phone.map(digits).filter(|p| !p.is_empty());
        let mut found = Vec::new();
        for page in &pages {
            for (resource, mode) in bundle_entries(page)? {
                if mode != "match" || resource["resourceType"] != "Patient" {
                    continue;
                }
                let Some(p) = patient_from(resource) else {
                    continue;
                };
                let given_ok = wanted_given.is_empty()
                    || p.given.to_lowercase().split_whitespace().any(|g| {
                        g == wanted_given || wanted_given.split_whitespace().next() == Some(g)
                    });
                let family_ok = p.family.to_lowercase() == wanted_family;
                let birth_ok = p.birth_date.as_deref() == Some(birth_date);
                let phone_ok = match &wanted_phone {
                    Some(want) => p
                        .phones
                        .iter()
                        .any(|have| have.ends_with(want.as_str()) || want.ends_with(have.as_str())),
                    None => true,
                };
                if given_ok && family_ok && birth_ok && phone_ok {
                    found.push(p);
                }
            }
        }
        Ok(found)
    }

    async fn name_of(&self, names: &mut Names, resource_type: &str, id: &str) -> Option<String> {
        let key = format!("{resource_type}/{id}");
        if let Some(known) = names.cache.get(&key) {
            return known.clone();
        }
        let name = match self.get_json(&key).await {
            Ok(resource) if resource_type == "Location" => {
                resource["name"].as_str().map(String::from)
            }
            Ok(resource) => human_name(&resource),
            Err(_) => None,
        };
        names.cache.insert(key, name.clone());
        name
    }

    /// Appointments of `patient_id` from `from` (RFC 3339) on, soonest first, cancelled ones left out.
    pub async fn appointments_for(
        &self,
        patient_id: &str,
        from: &str,
    ) -> Result<Vec<AppointmentInfo>, FhirError> {
        let query = format!(
            "Appointment?patient={}&date=ge{}&_count=50&_include=Appointment:practitioner",
            urlencode(&format!("Patient/{patient_id}")),
            urlencode(from)
        );
        let pages = self.search_pages(&query, 3).await?;
        let mut names = Names {
            cache: HashMap::new(),
        };
        // Included practitioners first, so no extra reads are needed where _include works.
        for page in &pages {
            for (resource, mode) in bundle_entries(page)? {
                if mode == "include"
                    && let Some(id) = resource["id"].as_str()
                {
                    let ty = resource["resourceType"].as_str().unwrap_or_default();
                    let name = if ty == "Location" {
                        resource["name"].as_str().map(String::from)
                    } else {
                        human_name(resource)
                    };
                    names.cache.insert(format!("{ty}/{id}"), name);
                }
            }
        }
        let mut out = Vec::new();
        for page in &pages {
            for (resource, mode) in bundle_entries(page)? {
                if mode != "match" || resource["resourceType"] != "Appointment" {
                    continue;
                }
                let Some(id) = resource["id"].as_str() else {
                    continue;
                };
                let status = resource["status"].as_str().unwrap_or("unknown").to_string();
                if status == "cancelled" || status == "entered-in-error" {
                    continue;
                }
                let mut practitioner_name = None;
                let mut location_name = None;
                for participant in resource["participant"].as_array().into_iter().flatten() {
                    let actor = &participant["actor"];
                    if let Some(pid) = reference_id(actor, "Practitioner") {
                        practitioner_name = match actor["display"].as_str() {
                            Some(d) => Some(d.to_string()),
                            None => self.name_of(&mut names, "Practitioner", &pid).await,
                        };
                    } else if let Some(lid) = reference_id(actor, "Location") {
                        location_name = match actor["display"].as_str() {
                            Some(d) => Some(d.to_string()),
                            None => self.name_of(&mut names, "Location", &lid).await,
                        };
                    }
                }
                out.push(AppointmentInfo {
                    id: id.to_string(),
                    status,
                    start: resource["start"].as_str().map(String::from),
                    end: resource["end"].as_str().map(String::from),
                    slot_id: resource["slot"]
                        .as_array()
                        .and_then(|s| s.first())
                        .and_then(|r| reference_id(r, "Slot")),
                    practitioner_name,
                    location_name,
                });
            }
        }
        // Servers differ in date filtering: apply it here too.
        out.retain(|a| a.start.as_deref().is_none_or(|s| s >= from));
        out.sort_by(|a, b| a.start.cmp(&b.start));
        Ok(out)
    }

    /// Free slots matching `search`, soonest first.
    pub async fn free_slots(&self, search: &SlotSearch) -> Result<Vec<SlotInfo>, FhirError> {
        let mut names = Names {
            cache: HashMap::new(),
        };
        // Schedules tell which practitioner/location a slot belongs to.
        let schedules = self.search_pages("Schedule?_count=100", 5).await?;
        let wanted = search.practitioner.as_deref().map(str::to_lowercase);
        let wanted_location = search.location.as_deref().map(str::to_lowercase);
        let mut chosen: Vec<ScheduleOwner> = Vec::new();
        for page in &schedules {
            for (schedule, mode) in bundle_entries(page)? {
                if mode != "match" || schedule["resourceType"] != "Schedule" {
                    continue;
                }
                if schedule["active"] == false {
                    continue;
                }
                let Some(schedule_id) = schedule["id"].as_str() else {
                    continue;
                };
                let mut practitioner = None;
                let mut location = None;
                for actor in schedule["actor"].as_array().into_iter().flatten() {
                    if let Some(pid) = reference_id(actor, "Practitioner") {
                        let name = match actor["display"].as_str() {
                            Some(d) => Some(d.to_string()),
                            None => self.name_of(&mut names, "Practitioner", &pid).await,
                        };
                        practitioner = Some((pid, name));
                    } else if let Some(lid) = reference_id(actor, "Location") {
                        location = match actor["display"].as_str() {
                            Some(d) => Some(d.to_string()),
                            None => self.name_of(&mut names, "Location", &lid).await,
                        };
                    }
                }
                if let Some(want) = &wanted {
                    let matches = practitioner.as_ref().is_some_and(|(pid, name)| {
                        pid.to_lowercase() == *want
                            || name
                                .as_deref()
                                .is_some_and(|n| n.to_lowercase().contains(want.as_str()))
                    });
                    if !matches {
                        continue;
                    }
                }
                if let Some(want) = &wanted_location
                    && !location
                        .as_deref()
                        .is_some_and(|l| l.to_lowercase().contains(want.as_str()))
                {
                    continue;
                }
                let (pid, pname) = practitioner.unzip();
                chosen.push(ScheduleOwner {
                    schedule_id: schedule_id.to_string(),
                    practitioner_id: pid,
                    practitioner_name: pname.flatten(),
                    location,
                });
            }
        }
        let limit = if search.limit == 0 { 10 } else { search.limit };
        let mut slots = Vec::new();
        for ScheduleOwner {
            schedule_id,
            practitioner_id: pid,
            practitioner_name: pname,
            location,
        } in chosen
        {
            let mut query = format!(
                "Slot?schedule={}&status=free&_count=50",
                urlencode(&format!("Schedule/{schedule_id}"))
            );
            if let Some(from) = &search.from {
                query.push_str(&format!("&start=ge{}", urlencode(from)));
            }
            if let Some(to) = &search.to {
                query.push_str(&format!("&start=lt{}", urlencode(to)));
            }
            for page in self.search_pages(&query, 4).await? {
                for (slot, mode) in bundle_entries(&page)? {
                    if mode != "match" || slot["resourceType"] != "Slot" {
                        continue;
                    }
                    let (Some(id), Some(start), Some(end)) = (
                        slot["id"].as_str(),
                        slot["start"].as_str(),
                        slot["end"].as_str(),
                    ) else {
                        continue;
                    };
                    let status = slot["status"].as_str().unwrap_or_default();
                    let service_type = slot["serviceType"]
                        .as_array()
                        .and_then(|s| s.first())
                        .and_then(|c| {
                            c["text"]
                                .as_str()
                                .or_else(|| c["coding"][0]["display"].as_str())
                                .or_else(|| c["coding"][0]["code"].as_str())
                        })
                        .map(String::from);
                    // Tolerant reader, strict result: filter again whatever the server did.
                    if status != "free"
                        || search.from.as_deref().is_some_and(|f| start < f)
                        || search.to.as_deref().is_some_and(|t| start >= t)
                    {
                        continue;
                    }
                    if let Some(want) = &search.service_type
                        && !service_type
                            .as_deref()
                            .is_some_and(|s| s.to_lowercase().contains(&want.to_lowercase()))
                    {
                        continue;
                    }
                    slots.push(SlotInfo {
                        id: id.to_string(),
                        start: start.to_string(),
                        end: end.to_string(),
                        status: status.to_string(),
                        schedule_id: Some(schedule_id.clone()),
                        practitioner_id: pid.clone(),
                        practitioner_name: pname.clone(),
                        location_name: location.clone(),
                        service_type,
                    });
                }
            }
        }
        slots.sort_by(|a, b| a.start.cmp(&b.start).then(a.id.cmp(&b.id)));
        slots.truncate(limit);
        Ok(slots)
    }

    async fn read_slot(&self, slot_id: &str) -> Result<(Value, FhirSlot), FhirError> {
        let json = self.get_json(&format!("Slot/{slot_id}")).await?;
        let typed: FhirSlot = serde_json::from_value(json.clone())
            .map_err(|e| FhirError::Malformed(format!("Slot/{slot_id}: {e}")))?;
        Ok((json, typed))
    }

    /// Marks a slot busy or free, conditional on the version read (If-Match).
    async fn set_slot_status(
        &self,
        mut slot: FhirSlot,
        status: SlotStatus,
    ) -> Result<(), FhirError> {
        slot.status = status;
        let id = slot.id.clone().unwrap_or_default();
        self.authorize().await?;
        let conditional = slot
            .meta
            .as_ref()
            .and_then(|m| m.version_id.as_ref())
            .is_some();
        match self.fhir.update(&slot, conditional).await {
            Ok(_) => Ok(()),
            Err(e) => match FhirError::from(e) {
                FhirError::Status {
                    status: 409 | 412, ..
                } => Err(FhirError::Conflict(format!("Slot/{id}"))),
                other => Err(other),
            },
        }
    }

    /// Books `slot_id` for `patient_id`: the slot goes busy first (If-Match on its version, so of
    /// two callers only one wins), then the Appointment is created; if that fails, the slot is
    /// freed again.
    pub async fn book(
        &self,
        patient_id: &str,
        slot_id: &str,
        reason: Option<&str>,
    ) -> Result<Booking, FhirError> {
        let (json, slot) = self.read_slot(slot_id).await?;
        if slot.status != SlotStatus::Free {
            return Ok(Booking::SlotTaken);
        }
        match self.set_slot_status(slot.clone(), SlotStatus::Busy).await {
            Ok(()) => {}
            Err(FhirError::Conflict(_)) => return Ok(Booking::SlotTaken),
            Err(e) => return Err(e),
        }
        // Which practitioner: the slot's schedule's actor.
        let mut participants = vec![json!({
            "actor": {"reference": format!("Patient/{patient_id}")},
            "required": "required",
            "status": "accepted"
        })];
        let mut practitioner_name = None;
        let mut location_name = None;
        if let Some(schedule_id) = reference_id(&json["schedule"], "Schedule")
            && let Ok(schedule) = self.get_json(&format!("Schedule/{schedule_id}")).await
        {
            let mut names = Names {
                cache: HashMap::new(),
            };
            for actor in schedule["actor"].as_array().into_iter().flatten() {
                if let Some(pid) = reference_id(actor, "Practitioner") {
                    practitioner_name = self.name_of(&mut names, "Practitioner", &pid).await;
                } else if let Some(lid) = reference_id(actor, "Location") {
                    location_name = self.name_of(&mut names, "Location", &lid).await;
                }
                if let Some(reference) = actor["reference"].as_str() {
                    participants.push(json!({
                        "actor": {"reference": reference},
                        "required": "required",
                        "status": "accepted"
                    }));
                }
            }
        }
        let mut appointment = json!({
            "resourceType": "Appointment",
            "status": "booked",
            "start": json["start"],
            "end": json["end"],
            "slot": [{"reference": format!("Slot/{slot_id}")}],
            "participant": participants,
            "created": now_rfc3339(),
        });
        if let Some(reason) = reason {
            appointment["description"] = reason.into();
        }
        let created = self.create_typed::<FhirAppointment>(appointment).await;
        match created {
            Ok(id) => Ok(Booking::Booked(AppointmentInfo {
                id,
                status: "booked".into(),
                start: json["start"].as_str().map(String::from),
                end: json["end"].as_str().map(String::from),
                slot_id: Some(slot_id.to_string()),
                practitioner_name,
                location_name,
            })),
            Err(e) => {
                // Undo: the slot goes back to free so nobody loses it.
                if let Ok((_, slot)) = self.read_slot(slot_id).await {
                    let _ = self.set_slot_status(slot, SlotStatus::Free).await;
                }
                Err(e)
            }
        }
    }

    /// Builds a typed resource from JSON (rejecting anything the model does not allow) and creates
    /// it; returns the new id.
    pub(crate) async fn create_typed<R>(&self, resource: Value) -> Result<String, FhirError>
    where
        R: serde::de::DeserializeOwned
            + serde::Serialize
            + fhir_sdk::r4b::resources::NamedResource
            + fhir_sdk::extensions::AnyResource<fhir_sdk::version::FhirR4B>
            + Send
            + Sync,
    {
        let typed: R = serde_json::from_value(resource).map_err(|e| {
            FhirError::Malformed(format!(
                "building a {}: {e}",
                <R as fhir_sdk::r4b::resources::NamedResource>::TYPE
            ))
        })?;
        self.authorize().await?;
        let resource_type = <R as fhir_sdk::r4b::resources::NamedResource>::TYPE.to_string();
        let url = format!("{}/{resource_type}", self.base_url);
        let body = serde_json::to_vec(&typed).map_err(|e| FhirError::Malformed(e.to_string()))?;
        // POST by hand rather than fhir-sdk's `create`, which insists on a Location header: the
        // id is taken from Location when there is one and from the returned resource otherwise.
        let response = self
            .fhir
            .send_custom_request(|http| {
                http.post(url)
                    .header("content-type", "application/fhir+json")
                    .header("accept", "application/fhir+json")
                    .header("prefer", "return=representation")
                    .body(body)
            })
            .await?;
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let text = response
            .text()
            .await
            .map_err(|e| FhirError::Transport(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(FhirError::Status {
                status: status.as_u16(),
                message: text.chars().take(300).collect(),
            });
        }
        let from_location = location.and_then(|l| {
            let mut parts = l.split('/').collect::<Vec<_>>();
            if let Some(i) = parts.iter().position(|p| *p == "_history") {
                parts.truncate(i);
            }
            let id = parts.pop()?;
            (parts.pop()? == resource_type).then(|| id.to_string())
        });
        match from_location {
            Some(id) => Ok(id),
            None => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["id"].as_str().map(String::from))
                .ok_or_else(|| {
                    FhirError::Malformed(format!(
                        "created {resource_type} has neither a Location header nor an id"
                    ))
                }),
        }
    }

    /// Cancels an appointment (status cancelled + reason) and frees its slot.
    pub async fn cancel(&self, appointment_id: &str, reason: &str) -> Result<(), FhirError> {
        let json = self
            .get_json(&format!("Appointment/{appointment_id}"))
            .await?;
        let mut appointment: FhirAppointment = serde_json::from_value(json.clone())
            .map_err(|e| FhirError::Malformed(format!("Appointment/{appointment_id}: {e}")))?;
        appointment.status = FhirAppointmentStatus::Cancelled;
        appointment.cancelation_reason = Some(
            serde_json::from_value(json!({"text": reason}))
                .map_err(|e| FhirError::Malformed(e.to_string()))?,
        );
        self.authorize().await?;
        let conditional = appointment
            .meta
            .as_ref()
            .and_then(|m| m.version_id.as_ref())
            .is_some();
        self.fhir
            .update(&appointment, conditional)
            .await
            .map_err(|e| match FhirError::from(e) {
                FhirError::Status {
                    status: 409 | 412, ..
                } => FhirError::Conflict(format!("Appointment/{appointment_id}")),
                other => other,
            })?;
        if let Some(slot_id) = json["slot"]
            .as_array()
            .and_then(|s| s.first())
            .and_then(|r| reference_id(r, "Slot"))
            && let Ok((_, slot)) = self.read_slot(&slot_id).await
            && slot.status != SlotStatus::Free
        {
            self.set_slot_status(slot, SlotStatus::Free).await?;
        }
        Ok(())
    }

    /// Books the new slot first, then cancels the old appointment; if the cancel fails, the new
    /// booking is cancelled again so the caller keeps exactly what they had.
    pub async fn reschedule(
        &self,
        patient_id: &str,
        old_appointment_id: &str,
        new_slot_id: &str,
    ) -> Result<Rescheduled, FhirError> {
        let booked = match self
            .book(patient_id, new_slot_id, Some("rescheduled"))
            .await?
        {
            Booking::Booked(a) => a,
            Booking::SlotTaken => return Ok(Rescheduled::SlotTaken),
        };
        match self
            .cancel(old_appointment_id, "rescheduled by patient")
            .await
        {
            Ok(()) => Ok(Rescheduled::Moved(booked)),
            Err(cancel_error) => {
                tracing::warn!(error = %cancel_error, "reschedule: cancelling the old appointment failed; undoing the new booking");
                self.cancel(&booked.id, "reschedule undone").await?;
                Ok(Rescheduled::RolledBack)
            }
        }
    }

    /// Creates any resource given as JSON, checked against fhir-sdk's typed model of its type
    /// first (for seeding demo data and messages); returns the new id.
    pub async fn create_resource(&self, resource: Value) -> Result<String, FhirError> {
        use fhir_sdk::r4b::resources as r;
        match resource["resourceType"].as_str().unwrap_or_default() {
            "Patient" => self.create_typed::<r::Patient>(resource).await,
            "Practitioner" => self.create_typed::<r::Practitioner>(resource).await,
            "Location" => self.create_typed::<r::Location>(resource).await,
            "Schedule" => self.create_typed::<r::Schedule>(resource).await,
            "Slot" => self.create_typed::<r::Slot>(resource).await,
            "Appointment" => self.create_typed::<r::Appointment>(resource).await,
            "Communication" => self.create_typed::<r::Communication>(resource).await,
            "Task" => self.create_typed::<r::Task>(resource).await,
            other => Err(FhirError::Config(format!(
                "creating {other:?} resources is not supported"
            ))),
        }
    }

    /// A search (relative URL such as `Patient?family=x`) as a raw Bundle.
    pub async fn search_json(&self, query: &str) -> Result<Value, FhirError> {
        self.get_json(query).await
    }

    /// Reads any resource as JSON.
    pub async fn read_json(&self, resource_type: &str, id: &str) -> Result<Value, FhirError> {
        self.get_json(&format!("{resource_type}/{id}")).await
    }

    /// A message for staff: a Communication, or a Task where the server has no Communication.
    pub async fn leave_message(
        &self,
        patient_id: Option<&str>,
        text: &str,
        urgent: bool,
    ) -> Result<String, FhirError> {
        let priority = if urgent { "urgent" } else { "routine" };
        let mut communication = json!({
            "resourceType": "Communication",
            "status": "in-progress",
            "priority": priority,
            "category": [{"text": "phone message"}],
            "sent": now_rfc3339(),
            "payload": [{"contentString": text}],
        });
        if let Some(pid) = patient_id {
            communication["subject"] = json!({"reference": format!("Patient/{pid}")});
        }
        match self
            .create_typed::<fhir_sdk::r4b::resources::Communication>(communication)
            .await
        {
            Ok(id) => Ok(format!("Communication/{id}")),
            Err(FhirError::Status {
                status: 400 | 404 | 405 | 422 | 501,
                ..
            }) => {
                let mut task = json!({
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "priority": priority,
                    "description": text,
                    "authoredOn": now_rfc3339(),
                });
                if let Some(pid) = patient_id {
                    task["for"] = json!({"reference": format!("Patient/{pid}")});
                }
                let id = self
                    .create_typed::<fhir_sdk::r4b::resources::Task>(task)
                    .await?;
                Ok(format!("Task/{id}"))
            }
            Err(e) => Err(e),
        }
    }

    /// The server's CapabilityStatement summary: FHIR version and which resource types support
    /// which interactions. `None` when the server has no /metadata.
    pub async fn capabilities(&self) -> Result<Option<Capabilities>, FhirError> {
        let cap = match self.get_json("metadata").await {
            Ok(cap) => cap,
            Err(FhirError::NotFound(_)) => return Ok(None),
            Err(FhirError::Status {
                status: 400 | 405 | 501,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if cap["resourceType"] != "CapabilityStatement" {
            return Ok(None);
        }
        let mut resources = Vec::new();
        for rest in cap["rest"].as_array().into_iter().flatten() {
            for r in rest["resource"].as_array().into_iter().flatten() {
                let Some(ty) = r["type"].as_str() else {
                    continue;
                };
                let interactions = r["interaction"]
                    .as_array()
                    .map(|i| {
                        i.iter()
                            .filter_map(|x| x["code"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                resources.push((ty.to_string(), interactions));
            }
        }
        Ok(Some(Capabilities {
            fhir_version: cap["fhirVersion"].as_str().unwrap_or_default().to_string(),
            software: cap["software"]["name"].as_str().map(String::from),
            resources,
        }))
    }
}

/// What a server says it supports.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub fhir_version: String,
    pub software: Option<String>,
    /// (resource type, interactions such as read/search-type/create/update).
    pub resources: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    pub fn supports(&self, resource_type: &str, interaction: &str) -> bool {
        self.resources
            .iter()
            .any(|(ty, i)| ty == resource_type && i.iter().any(|x| x == interaction))
    }
}

pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339_from_unix(secs)
}

/// `1970-01-01T00:00:00Z`-style UTC time of a Unix timestamp.
pub fn rfc3339_from_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_times() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_795_399_860), "2026-11-23T02:11:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn patient_parsing_is_tolerant() {
        let p = patient_from(&json!({
            "resourceType": "Patient", "id": "p1",
            "extension": [{"url": "http://example.org/unknown", "valueString": "x"}],
            "name": [{"family": "Smith", "given": ["Anna", "Marie"]}],
            "telecom": [{"system": "phone", "value": "+1 (555) 010-2030"}, {"system": "email", "value": "a@b"}],
            "birthDate": "1975-03-03", "unknownElement": {"deep": true}
        }))
        .unwrap();
        assert_eq!(p.given, "Anna Marie");
        assert_eq!(p.phones, vec!["15550102030"]);
        assert!(patient_from(&json!({"resourceType": "Patient", "id": "x"})).is_none());
        assert!(!format!("{p:?}").contains("Smith"));
    }

    #[test]
    fn references_and_bundles() {
        assert_eq!(
            reference_id(&json!({"reference": "Practitioner/abc"}), "Practitioner"),
            Some("abc".into())
        );
        assert_eq!(
            reference_id(
                &json!({"reference": "http://x/fhir/Practitioner/abc"}),
                "Practitioner"
            ),
            Some("abc".into())
        );
        assert_eq!(
            reference_id(&json!({"reference": "Location/1"}), "Practitioner"),
            None
        );
        assert_eq!(reference_id(&json!({}), "Practitioner"), None);
        assert!(bundle_entries(&json!({"resourceType": "Patient"})).is_err());
        assert!(
            bundle_entries(&json!({"resourceType": "Bundle"}))
                .unwrap()
                .is_empty()
        );
    }
}
