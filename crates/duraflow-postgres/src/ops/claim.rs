//! What a statement that posts messages does to each instance it posted to, in SQL shared by a
//! completion's claims (`tasks::COMPLETE`) and a send's (`sends::SEND_CLAIMING`): the
//! instance's due time moves forward to the messages, as a plain send's does, or its turn is
//! leased to the poster when it is free at once.

/// The `plan` CTE's column `moves` for instance row `i` after messages visible at `visible`
/// (a parameter) are posted to it: whether its due time moves.
pub(crate) fn moves(visible: &str) -> String {
    format!("(i.due_at IS NULL OR i.due_at > greatest({visible}, i.not_before)) AS moves")
}

/// Whether instance row `i`'s turn may go to a claimer that serves the queues and workflow
/// names of the parameters `queues` and `names` (NULL: every name): it passes the filter and
/// needs no admission (see `flow::ADMISSION_FREE`).
pub(crate) fn claimable(queues: &str, names: &str) -> String {
    format!(
        "i.queue = ANY({queues}::text[])
         AND ({names}::text[] IS NULL OR i.name = ANY({names}::text[]))
         AND {}",
        super::flow::ADMISSION_FREE
    )
}

/// The `LATERAL` join (alias `x`, column `due`) that gives instance row `i`'s due time after
/// messages visible at `visible` are posted to it: its lease's expiry while a turn holds it,
/// else the messages' time, not before its `not_before`; unchanged when it is due sooner.
pub(crate) fn due(visible: &str) -> String {
    format!(
        "CROSS JOIN LATERAL (
             SELECT CASE WHEN i.due_at IS NULL OR i.due_at > greatest({visible}, i.not_before)
                         THEN coalesce(i.lease_until, greatest({visible}, i.not_before))
                         ELSE i.due_at END AS due
         ) x"
    )
}

/// The `UPDATE` of the instances the `plan` CTE names (its columns `id`, `first`, the first
/// message posted, `due`, `moves`, `claims` and `claim_until`): a claim leases the turn until
/// `claim_until` to `owner` (a parameter), first admitted at `now`; otherwise the due time
/// moves to `due` where it moves. The caller adds the `RETURNING`.
pub(crate) fn claim_or_move(now: &str, owner: &str) -> String {
    format!(
        "UPDATE instances i
            SET due_seq = coalesce(i.due_seq, pl.first),
                due_at = CASE WHEN pl.claims THEN pl.claim_until ELSE pl.due END,
                lease_token = CASE WHEN pl.claims THEN nextval('lease_tokens')
                                   ELSE i.lease_token END,
                lease_until = CASE WHEN pl.claims THEN pl.claim_until ELSE i.lease_until END,
                lease_owner = CASE WHEN pl.claims THEN {owner} ELSE i.lease_owner END,
                started_at = CASE WHEN pl.claims THEN coalesce(i.started_at, {now})
                                  ELSE i.started_at END
           FROM plan pl
          WHERE i.id = pl.id AND (pl.moves OR pl.claims)"
    )
}

/// The inbox of a turn claimed for instance row `l` at `now` (a parameter), for
/// `turns::turn_extras`: the messages the statement's snapshot holds, visible by then, and
/// those the statement posted (CTE `posted`), which the snapshot does not hold.
pub(crate) fn claimed_inbox(now: &str) -> String {
    format!(
        "SELECT m.id, m.visible_at, m.kind FROM messages m
          WHERE m.instance_id = l.id AND m.visible_at <= {now}
         UNION ALL
         SELECT p.id, p.visible_at, p.kind FROM posted p WHERE p.instance_id = l.id"
    )
}
