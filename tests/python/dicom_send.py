"""Sends a study of generated CT instances to a store SCP with pynetdicom.

usage: dicom_send.py HOST PORT CALLED_AE COUNT STUDY_UID ACKED_FILE

Each instance is pydicom's CT_small.dcm with its own SOP instance UID
(STUDY_UID.N) under one study and series. The UID of every instance the SCP
answered with success is appended to ACKED_FILE and flushed at once, so a
test that kills the SCP midway knows exactly what was acknowledged. Prints
one line per status that was not success and exits 0 when the association
ends (released, aborted or lost).
"""

import sys

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

host, port, called, count, study, acked_path = sys.argv[1:7]
count = int(count)

template = dcmread(get_testdata_file("CT_small.dcm", download=False))
ae = AE(ae_title="SENDER")
ae.add_requested_context(CTImageStorage, template.file_meta.TransferSyntaxUID)
ae.acse_timeout = 30
ae.dimse_timeout = 10
assoc = ae.associate(host, int(port), ae_title=called)
if not assoc.is_established:
    print("association not established")
    sys.exit(2)
with open(acked_path, "a") as acked:
    for n in range(1, count + 1):
        ds = template.copy()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = study + ".1"
        ds.SOPInstanceUID = f"{study}.1.{n}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n
        try:
            status = assoc.send_c_store(ds)
        except Exception as e:  # the SCP went away
            print(f"send failed: {e}")
            break
        if not assoc.is_established and not status:
            break
        code = getattr(status, "Status", None)
        if code == 0x0000:
            acked.write(ds.SOPInstanceUID + "\n")
            acked.flush()
        else:
            print(f"status {code!r} for {ds.SOPInstanceUID}")
if assoc.is_established:
    assoc.release()
