"""Queries a Modality Worklist SCP with pynetdicom.

usage: worklist_find.py HOST PORT CALLED_AE MODALITY DATE [--cancel-after N]

Sends one C-FIND (Modality Worklist Information Model) with the modality
and scheduled start date as matching keys (empty: universal) and patient
name, patient id, accession number and study instance UID as return keys.
With --cancel-after N it sends a C-CANCEL once N pending responses came
(0: right after the request).
Prints one JSON object: the pending matches (each with its returned keys,
names decoded by pydicom from the response's character set) and the final
status in hex.
"""

import json
import sys

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

host, port, called, modality, date = sys.argv[1:6]
cancel_after = None
if "--cancel-after" in sys.argv:
    cancel_after = int(sys.argv[sys.argv.index("--cancel-after") + 1])

ae = AE(ae_title="FINDSCU")
ae.add_requested_context(ModalityWorklistInformationFind)
ae.acse_timeout = 10
ae.dimse_timeout = 10
assoc = ae.associate(host, int(port), ae_title=called)
if not assoc.is_established:
    print(json.dumps({"error": "association not established"}))
    sys.exit(2)

ds = Dataset()
ds.PatientName = ""
ds.PatientID = ""
ds.AccessionNumber = ""
ds.StudyInstanceUID = ""
step = Dataset()
step.Modality = modality
step.ScheduledProcedureStepStartDate = date
step.ScheduledStationAETitle = ""
step.ScheduledProcedureStepStatus = ""
ds.ScheduledProcedureStepSequence = [step]

matches = []
final = None
# send_c_find sends the request at once; the responses are read as the
# generator is iterated, so a C-CANCEL can follow the request immediately.
responses = assoc.send_c_find(ds, ModalityWorklistInformationFind, msg_id=1)
context_id = assoc._get_valid_context(ModalityWorklistInformationFind, "", "scu").context_id
if cancel_after == 0:
    assoc.send_c_cancel(1, context_id)
for status, identifier in responses:
    if status is None:
        final = "none"
        break
    code = status.Status
    if code in (0xFF00, 0xFF01):
        step = identifier.ScheduledProcedureStepSequence[0]
        matches.append({
            "name": str(identifier.PatientName),
            "id": identifier.PatientID,
            "accession": identifier.AccessionNumber,
            "study": identifier.StudyInstanceUID,
            "modality": step.Modality,
            "date": step.ScheduledProcedureStepStartDate,
            "station": step.ScheduledStationAETitle,
            "status": step.ScheduledProcedureStepStatus,
        })
        if cancel_after is not None and len(matches) == cancel_after:
            assoc.send_c_cancel(1, context_id)
    else:
        final = f"{code:04X}"
assoc.release()
print(json.dumps({"matches": matches, "final": final}, ensure_ascii=False))
