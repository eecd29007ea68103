//! `carevoice emr seed`: a demo clinic in the configured FHIR server, so a new user can call and
//! book: practitioners, a location, schedules, two weeks of slots, patients, some appointments.
//! All people here are fictional.

use carevoice_fhir::{FhirClient, FhirError};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};
use serde_json::{Value, json};

/// Identifier system marking demo data (and letting a second seed notice the first).
pub const DEMO_SYSTEM: &str = "urn:carevoice:demo";

/// A fictional patient of the demo clinic.
pub struct DemoPatient {
    pub key: &'static str,
    pub given: &'static str,
    pub family: &'static str,
    pub birth_date: &'static str,
    pub phone: &'static str,
}

pub const PATIENTS: &[DemoPatient] = &[
    DemoPatient {
        key: "anna-smith",
        given: "Anna",
        family: "Smith",
        birth_date: "1975-03-03",
        phone: "+1 555 010 2030",
    },
    DemoPatient {
        key: "john-doe",
        given: "John",
        family: "Doe",
        birth_date: "1980-07-14",
        phone: "+1 555 010 4455",
    },
    DemoPatient {
        key: "maria-garcia",
        given: "Maria",
        family: "Garcia",
        birth_date: "1992-11-30",
        phone: "+1 555 010 7788",
    },
    DemoPatient {
        key: "robert-johnson",
        given: "Robert",
        family: "Johnson",
        birth_date: "1965-01-22",
        phone: "+1 555 010 9911",
    },
    DemoPatient {
        key: "emily-nguyen",
        given: "Emily",
        family: "Nguyen",
        birth_date: "2001-05-09",
        phone: "+1 555 010 3322",
    },
    // Two records with the same name and birth date: a search must not pick one.
    DemoPatient {
        key: "michael-brown-1",
        given: "Michael",
        family: "Brown",
        birth_date: "1970-06-15",
        phone: "+1 555 010 6001",
    },
    DemoPatient {
        key: "michael-brown-2",
        given: "Michael",
        family: "Brown",
        birth_date: "1970-06-15",
        phone: "+1 555 010 6002",
    },
];

/// (key, prefix, given, family, specialty)
pub const PRACTITIONERS: &[(&str, &str, &str, &str, &str)] = &[
    ("patel", "Dr.", "Priya", "Patel", "Family medicine"),
    ("alvarez", "Dr.", "Miguel", "Alvarez", "Pediatrics"),
    ("chen", "Dr.", "Sarah", "Chen", "Internal medicine"),
];

#[derive(Debug, Default)]
pub struct SeedReport {
    pub already_seeded: bool,
    pub practitioners: usize,
    pub patients: usize,
    pub slots: usize,
    pub appointments: usize,
}

/// Slot start times: weekdays of the `days` days from `first_day`, 09:00-12:00 and 14:00-16:00
/// local, every 30 minutes.
pub fn slot_times(first_day: Date, days: i64, tz: &TimeZone) -> Vec<(Zoned, Zoned)> {
    let mut out = Vec::new();
    for offset in 0..days {
        let Ok(day) = first_day.checked_add(offset.days()) else {
            continue;
        };
        if matches!(
            day.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ) {
            continue;
        }
        for (from, to) in [(9, 12), (14, 16)] {
            for half_hours in 0..((to - from) * 2) {
                let time = Time::constant(from + half_hours / 2, (half_hours % 2) * 30, 0, 0);
                let Ok(start) = day.to_datetime(time).to_zoned(tz.clone()) else {
                    continue;
                };
                let Ok(end) = start.checked_add(30.minutes()) else {
                    continue;
                };
                out.push((start, end));
            }
        }
    }
    out
}

fn rfc3339(z: &Zoned) -> String {
    z.timestamp().to_string()
}

/// Writes the demo clinic. Idempotent: a server that already has the demo practitioners is left
/// alone.
pub async fn seed(
    client: &FhirClient,
    tz: &TimeZone,
    first_day: Date,
    days: i64,
) -> Result<SeedReport, FhirError> {
    let mut report = SeedReport::default();
    if let Ok(existing) = client
        .search_json(&format!("Practitioner?identifier={DEMO_SYSTEM}%7Cpatel"))
        .await
        && existing["entry"].as_array().is_some_and(|e| !e.is_empty())
    {
        report.already_seeded = true;
        return Ok(report);
    }
    let location = client
        .create_resource(json!({
            "resourceType": "Location",
            "identifier": [{"system": DEMO_SYSTEM, "value": "main"}],
            "status": "active",
            "name": "Main Street Clinic",
            "address": {"line": ["100 Main Street"], "city": "Springfield", "postalCode": "01101"}
        }))
        .await?;
    let slot_times = slot_times(first_day, days, tz);
    let mut first_slots: Vec<(String, Value, String)> = Vec::new();
    for (key, prefix, given, family, specialty) in PRACTITIONERS {
        let practitioner = client
            .create_resource(json!({
                "resourceType": "Practitioner",
                "identifier": [{"system": DEMO_SYSTEM, "value": key}],
                "active": true,
                "name": [{"prefix": [prefix], "given": [given], "family": family}],
            }))
            .await?;
        report.practitioners += 1;
        let schedule = client
            .create_resource(json!({
                "resourceType": "Schedule",
                "identifier": [{"system": DEMO_SYSTEM, "value": key}],
                "active": true,
                "serviceType": [{"text": specialty}],
                "actor": [
                    {"reference": format!("Practitioner/{practitioner}"), "display": format!("{prefix} {given} {family}")},
                    {"reference": format!("Location/{location}"), "display": "Main Street Clinic"}
                ],
            }))
            .await?;
        let mut upcoming = 0;
        for (start, end) in &slot_times {
            let slot = json!({
                "resourceType": "Slot",
                "schedule": {"reference": format!("Schedule/{schedule}")},
                "serviceType": [{"text": specialty}],
                "status": "free",
                "start": rfc3339(start),
                "end": rfc3339(end),
            });
            let id = client.create_resource(slot.clone()).await?;
            report.slots += 1;
            // Remember one mid-morning slot per practitioner for the demo appointments, from the
            // next day on: a slot earlier today may already be past, and a past visit is not the
            // patient's next appointment.
            if start.date() > first_day {
                if upcoming == 3 {
                    first_slots.push((id, slot, practitioner.clone()));
                }
                upcoming += 1;
            }
        }
    }
    let mut patient_ids = Vec::new();
    for p in PATIENTS {
        let id = client
            .create_resource(json!({
                "resourceType": "Patient",
                "identifier": [{"system": DEMO_SYSTEM, "value": p.key}],
                "active": true,
                "name": [{"use": "official", "given": [p.given], "family": p.family}],
                "birthDate": p.birth_date,
                "telecom": [{"system": "phone", "value": p.phone, "use": "mobile"}],
            }))
            .await?;
        report.patients += 1;
        patient_ids.push(id);
    }
    // Anna Smith sees Dr. Patel, John Doe sees Dr. Chen: booked through the real booking path.
    for (patient_index, slot_index) in [(0usize, 0usize), (1, 2)] {
        if let (Some(patient), Some((slot_id, _, _))) =
            (patient_ids.get(patient_index), first_slots.get(slot_index))
            && let carevoice_fhir::Booking::Booked(_) =
                client.book(patient, slot_id, Some("check-up")).await?
        {
            report.appointments += 1;
        }
    }
    Ok(report)
}
