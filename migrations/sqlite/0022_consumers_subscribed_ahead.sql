-- Subscribe the case-referral consumer now, so events committed before it first runs
-- (a process serving precertification or oncology may take calls before the one
-- running case management has started) are kept for it. Its kinds are those of
-- `carepath_cases::REFERRAL_EVENT_KINDS`; it sets them again each time it starts.
INSERT INTO outbox_subscription (consumer, kind_prefix) VALUES
    ('cases-referrals', 'oncology.plan.submitted'),
    ('cases-referrals', 'precert.case.approved'),
    ('cases-referrals', 'precert.case.notification_received'),
    ('cases-referrals', 'secondopinion.request.submitted')
ON CONFLICT DO NOTHING;

-- The subscription feed takes the six kinds it notifies
-- (`carepath_app::subscriptions::feed::NOTIFIED_KINDS`), not every case event.
DELETE FROM outbox_subscription
WHERE consumer = 'fhir-subscriptions' AND kind_prefix = 'precert.case.';
INSERT INTO outbox_subscription (consumer, kind_prefix) VALUES
    ('fhir-subscriptions', 'precert.case.approved'),
    ('fhir-subscriptions', 'precert.case.partially_approved'),
    ('fhir-subscriptions', 'precert.case.denied'),
    ('fhir-subscriptions', 'precert.case.information_requested'),
    ('fhir-subscriptions', 'precert.case.appeal_decided'),
    ('fhir-subscriptions', 'precert.case.withdrawn')
ON CONFLICT DO NOTHING;
