"""A worker process for concurrency tests: run_provision.py SETTINGS_JSON FINGERPRINT_JSON; prints the verdict."""

import json
import sys
from pathlib import Path

from f5_worker.flash_attn.provision import provision
from f5_worker.runtime.fingerprint import Fingerprint
from f5_worker.settings import Settings

settings_values = json.loads(sys.argv[1])
settings_values["volume"] = Path(settings_values["volume"])
fingerprint = Fingerprint.from_json(json.loads(sys.argv[2]))
verdict = provision(Settings(**settings_values), detect=lambda with_abi=True: fingerprint)
print(json.dumps(verdict.to_json(), default=str))
