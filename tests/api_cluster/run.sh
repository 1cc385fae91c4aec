#!/usr/bin/env bash
# The api tests against a three-node cluster (one nats-server 2.15.1, three zaiko
# nodes), every request to a brand's routes through a node that does not own the
# brand's partition. Skipped here, each for its reason, are the tests only a single
# node can run; every other api test of the included modules must pass unchanged.
set -euo pipefail
cd "$(dirname "$0")/../.."
skip=(
  # One manual clock: in cluster mode each node has its own, and these tests move the
  # clock of the node asked (or restart a node, whose manual clock starts again).
  fulfilment::reservations_are_idempotent_by_id_and_expire_on_the_clock
  fulfilment::reservations_shipments_and_expiries_survive_sigkill
  returns::ended_returns_are_purged_with_their_shipment_and_not_before
  transfers::ended_transfers_are_purged_after_their_retention
  search_shipments::channel_in_stock_follows_stock_changes_and_reconfiguration
  search_shipments::created_filters_are_half_open_and_pages_equal_one_big_page
  # --demo is single-node only.
  basics::demo_start_loads_the_sample_business_once
  basics::demo_refuses_a_data_dir_that_holds_other_data
  # The index files of one data dir and their lifecycle (a cluster node rebuilds its
  # index at every start; docs/cluster.md, Search).
  search::a_deleted_or_damaged_index_is_rebuilt_on_start
  search::after_kill_9_the_index_catches_up_from_its_stored_lsn
  search::graceful_shutdown_commits_the_index_at_the_last_lsn
  search::index_rebuild_builds_the_index_offline_at_the_last_lsn
  search_shipments::after_kill_9_the_shipment_index_catches_up_from_its_stored_lsn
  search_shipments::ship_to_never_appears_in_a_search_answer_or_in_the_index_files
  # min_lsn without a brand: 400 in cluster mode (an LSN is one partition's).
  search::min_lsn_beyond_the_journal_is_not_ready
  search_shipments::bad_shipment_parameters_are_400_naming_the_parameter
  # Holds long polls on one node by raw TCP and asks again through another: the
  # limit of long polls per brand is per node.
  feed::one_brand_cannot_take_every_long_poll_slot
)
args=()
for t in "${skip[@]}"; do args+=(--skip "$t"); done
cargo test --release --test api_cluster -- "${args[@]}"
