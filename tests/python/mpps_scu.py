"""A modality's MPPS conversation with pynetdicom, as the MPPS SCU.

usage: mpps_scu.py HOST PORT CALLED_AE STEP_UID STUDY_UID
                   [--only create|complete] [--accession A] [--sps S]

On one association: N-CREATE of STEP_UID (IN PROGRESS), the same N-CREATE
again, an N-SET of a step that does not exist, an N-SET of STEP_UID to
COMPLETED with its end and performed series, and that N-SET again. With
--only, just the first N-CREATE or just the N-SET to COMPLETED. --accession
and --sps name the scheduled step performed (default ACC-77 and SPS-1).
Prints one line per request, `<name> 0x<status>`; exits 2 if no
association.
"""

import sys

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS

host, port, called, step_uid, study_uid = sys.argv[1:6]


def flag(name, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


only = flag("--only", None)
accession = flag("--accession", "ACC-77")
sps = flag("--sps", "SPS-1")

ae = AE(ae_title="MODALITY")
ae.add_requested_context(MPPS)
ae.acse_timeout = 30
ae.dimse_timeout = 10
assoc = ae.associate(host, int(port), ae_title=called)
if not assoc.is_established:
    print("association not established")
    sys.exit(2)


def create():
    ds = Dataset()
    ds.PatientID = "P-42"
    ds.PatientName = "DOE^JANE"
    ds.Modality = "CT"
    step = Dataset()
    step.StudyInstanceUID = study_uid
    step.AccessionNumber = accession
    step.ScheduledProcedureStepID = sps
    step.RequestedProcedureID = "RP-1"
    ds.ScheduledStepAttributesSequence = Sequence([step])
    code = Dataset()
    code.CodeValue = "CTHEAD"
    code.CodingSchemeDesignator = "99LOCAL"
    code.CodeMeaning = "CT head"
    ds.ProcedureCodeSequence = Sequence([code])
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedProcedureStepStartDate = "20260131"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = "PPS-1"
    ds.PerformedProcedureStepDescription = "CT head without contrast"
    ds.PerformedSeriesSequence = Sequence([])
    return ds


def completed():
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20260131"
    ds.PerformedProcedureStepEndTime = "103000"
    series = Dataset()
    series.SeriesInstanceUID = study_uid + ".1"
    series.SeriesDescription = "axial"
    series.PerformingPhysicianName = ""
    series.OperatorsName = ""
    series.ProtocolName = "HEAD"
    series.RetrieveAETitle = ""
    image = Dataset()
    image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image.ReferencedSOPInstanceUID = study_uid + ".1.1"
    series.ReferencedImageSequence = Sequence([image])
    series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([])
    ds.PerformedSeriesSequence = Sequence([series])
    return ds


def code(status):
    return "0x%04X" % status.Status if status else "none"


if only == "create":
    status, _ = assoc.send_n_create(create(), MPPS, step_uid)
    print("create", code(status))
    assoc.release()
    sys.exit(0)
if only == "complete":
    status, _ = assoc.send_n_set(completed(), MPPS, step_uid)
    print("set-completed", code(status))
    assoc.release()
    sys.exit(0)
status, _ = assoc.send_n_create(create(), MPPS, step_uid)
print("create", code(status))
status, _ = assoc.send_n_create(create(), MPPS, step_uid)
print("create-again", code(status))
status, _ = assoc.send_n_set(completed(), MPPS, generate_uid())
print("set-unknown", code(status))
status, _ = assoc.send_n_set(completed(), MPPS, step_uid)
print("set-completed", code(status))
status, _ = assoc.send_n_set(completed(), MPPS, step_uid)
print("set-again", code(status))
assoc.release()
