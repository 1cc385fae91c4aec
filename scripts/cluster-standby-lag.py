#!/usr/bin/env python3
"""How far the standbys of a dev cluster (scripts/cluster-dev.sh) are behind their owners.

Samples GET /v1/admin/cluster on the three nodes every 0.2 s for SECONDS and, for each
sample, takes the worst partition: the owner's durable LSN minus its standby's applied
LSN, in records. The three views are read one after another, so a sample can overstate
the lag by what the owner wrote in between.

    python3 scripts/cluster-standby-lag.py SECONDS
"""
import urllib.request, time, re, sys, json
import os
A={"authorization":"Bearer "+os.environ.get("ZAIKO_ADMIN_TOKEN","dev-admin-token-0123456789")}
end=time.time()+float(sys.argv[1]); samples=[]
while time.time()<end:
    views={}
    for p in (18081,18082,18083):
        try: views[p]=json.load(urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/v1/admin/cluster"%p,headers=A),timeout=2))
        except Exception: pass
    worst=0
    parts={}
    for p,v in views.items():
        for x in v["partitions"]:
            if x["id"]=="registry": continue
            parts.setdefault(x["id"],[]).append((x["lsn"], "standby_lag_entries" in x, x["owner"] and x["owner"]["node"]==v["node"]))
    for pid,l in parts.items():
        own=[a for a,f,o in l if o]; fol=[a for a,f,o in l if f]
        if own and fol: worst=max(worst, own[0]-min(fol))
    samples.append(worst); time.sleep(0.2)
samples.sort(); print("samples",len(samples),"worst partition, records the standby is behind its owner: p50",samples[len(samples)//2],"p99",samples[int(len(samples)*.99)],"max",samples[-1])
