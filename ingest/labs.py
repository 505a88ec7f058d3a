"""Lab test catalogue: printed test names -> LOINC code and UCUM unit (https://loinc.org, https://ucum.org/ucum).

A data table, not logic. Every code below is the LOINC term a reporting lab would use for the printed
name; displays are LOINC long common names; ``unit`` is the term's usual UCUM unit (LOINC's
example UCUM unit) and ``alt_units`` lists other UCUM units of the SAME LOINC property that labs print
(g/L for g/dL, 10*9/L for 10*3/uL, meq/L for monovalent ions). A unit of another property (glucose in
mmol/L is a Moles/volume term, not 2339-0) is deliberately absent: such a row is reported, not
recoded. ``PRINTED_UNITS`` maps the unit spellings seen on printed reports to UCUM codes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True, slots=True)
class LabTest:
    """One orderable result: LOINC term, its usual UCUM unit, and the names labs print for it."""

    code: str
    display: str
    unit: str
    names: tuple[str, ...]
    panel: str
    alt_units: tuple[str, ...] = ()

    @property
    def units(self) -> tuple[str, ...]:
        """Every UCUM unit accepted for this test, the usual one first."""
        return (self.unit, *self.alt_units)


# fmt: off
CATALOGUE: tuple[LabTest, ...] = (
    # --- Complete blood count (CBC) ---
    LabTest("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL",
            ("WBC", "White Blood Cell Count", "White Blood Cells", "WBC Count", "Leukocytes",
             "Leucocytes", "White Cell Count", "Total Leukocyte Count"), "CBC", ("10*9/L",)),
    LabTest("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL",
            ("RBC", "Red Blood Cell Count", "Red Blood Cells", "RBC Count", "Erythrocytes",
             "Red Cell Count"), "CBC", ("10*12/L",)),
    LabTest("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL",
            ("Hemoglobin", "Haemoglobin", "Hgb", "Hb"), "CBC", ("g/L",)),
    LabTest("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%",
            ("Hematocrit", "Haematocrit", "Hct", "PCV", "Packed Cell Volume"), "CBC", ("L/L",)),
    LabTest("787-2", "MCV [Entitic volume] by Automated count", "fL",
            ("MCV", "Mean Corpuscular Volume", "Mean Cell Volume"), "CBC"),
    LabTest("785-6", "MCH [Entitic mass] by Automated count", "pg",
            ("MCH", "Mean Corpuscular Hemoglobin", "Mean Cell Hemoglobin"), "CBC"),
    LabTest("786-4", "MCHC [Mass/volume] by Automated count", "g/dL",
            ("MCHC", "Mean Corpuscular Hemoglobin Concentration",
             "Mean Cell Hemoglobin Concentration"), "CBC", ("g/L",)),
    LabTest("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "%",
            ("RDW", "RDW-CV", "Red Cell Distribution Width", "Red Blood Cell Distribution Width"), "CBC"),
    LabTest("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL",
            ("Platelets", "Platelet Count", "PLT", "Thrombocytes"), "CBC", ("10*9/L",)),
    LabTest("32623-1", "Platelet mean volume [Entitic volume] in Blood by Automated count", "fL",
            ("MPV", "Mean Platelet Volume"), "CBC"),
    LabTest("770-8", "Neutrophils/100 leukocytes in Blood by Automated count", "%",
            ("Neutrophils", "Neutrophils %", "Neutrophil %", "Neut %", "Neutrophils Percent"), "CBC"),
    LabTest("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", "%",
            ("Lymphocytes", "Lymphocytes %", "Lymph %", "Lymphocytes Percent"), "CBC"),
    LabTest("5905-5", "Monocytes/100 leukocytes in Blood by Automated count", "%",
            ("Monocytes", "Monocytes %", "Mono %", "Monocytes Percent"), "CBC"),
    LabTest("713-8", "Eosinophils/100 leukocytes in Blood by Automated count", "%",
            ("Eosinophils", "Eosinophils %", "Eos %", "Eosinophils Percent"), "CBC"),
    LabTest("706-2", "Basophils/100 leukocytes in Blood by Automated count", "%",
            ("Basophils", "Basophils %", "Baso %", "Basophils Percent"), "CBC"),
    LabTest("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*3/uL",
            ("Neutrophils Absolute", "Absolute Neutrophils", "Neut #", "ANC"), "CBC", ("10*9/L",)),
    LabTest("731-0", "Lymphocytes [#/volume] in Blood by Automated count", "10*3/uL",
            ("Lymphocytes Absolute", "Absolute Lymphocytes", "Lymph #"), "CBC", ("10*9/L",)),
    LabTest("742-7", "Monocytes [#/volume] in Blood by Automated count", "10*3/uL",
            ("Monocytes Absolute", "Absolute Monocytes", "Mono #"), "CBC", ("10*9/L",)),
    LabTest("711-2", "Eosinophils [#/volume] in Blood by Automated count", "10*3/uL",
            ("Eosinophils Absolute", "Absolute Eosinophils", "Eos #"), "CBC", ("10*9/L",)),
    LabTest("704-7", "Basophils [#/volume] in Blood by Automated count", "10*3/uL",
            ("Basophils Absolute", "Absolute Basophils", "Baso #"), "CBC", ("10*9/L",)),
    # --- Basic / comprehensive metabolic panel (BMP / CMP) ---
    LabTest("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL",
            ("Glucose", "Blood Glucose", "Glucose Blood", "Glucose, Blood"), "BMP"),
    LabTest("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Glucose Serum", "Glucose, Serum", "Serum Glucose", "Glucose Plasma", "Plasma Glucose",
             "Glucose (Serum)"), "BMP"),
    LabTest("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Fasting Glucose", "Glucose Fasting", "Glucose, Fasting", "Fasting Blood Sugar", "FBS"),
            "BMP"),
    LabTest("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL",
            ("BUN", "Urea Nitrogen", "Blood Urea Nitrogen", "Urea Nitrogen (BUN)"), "BMP"),
    LabTest("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Creatinine", "Creatinine Serum", "Creatinine, Serum", "Serum Creatinine", "Creat"),
            "BMP"),
    LabTest("98979-8", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
            "Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)", "mL/min/{1.73_m2}",
            ("eGFR", "Estimated GFR", "eGFR CKD-EPI", "eGFR (CKD-EPI 2021)", "eGFRcr",
             "Estimated Glomerular Filtration Rate"), "BMP"),
    LabTest("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L",
            ("Sodium", "Na", "Sodium, Serum"), "BMP", ("meq/L",)),
    LabTest("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L",
            ("Potassium", "K", "Potassium, Serum"), "BMP", ("meq/L",)),
    LabTest("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L",
            ("Chloride", "Cl", "Chloride, Serum"), "BMP", ("meq/L",)),
    LabTest("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L",
            ("CO2", "Carbon Dioxide", "Carbon Dioxide Total", "Total CO2", "Bicarbonate", "HCO3"),
            "BMP", ("meq/L",)),
    LabTest("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Calcium", "Ca", "Calcium, Serum", "Total Calcium"), "BMP"),
    LabTest("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL",
            ("Total Protein", "Protein Total", "Protein, Total"), "CMP", ("g/L",)),
    LabTest("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL",
            ("Albumin", "Albumin, Serum", "Alb"), "CMP", ("g/L",)),
    LabTest("10834-0", "Globulin [Mass/volume] in Serum by calculation", "g/dL",
            ("Globulin", "Globulin Total", "Globulin (calc)"), "CMP", ("g/L",)),
    LabTest("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Total Bilirubin", "Bilirubin Total", "Bilirubin, Total", "Bilirubin", "T Bili"),
            "CMP"),
    LabTest("1968-7", "Bilirubin.direct [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Direct Bilirubin", "Bilirubin Direct", "Bilirubin, Direct", "Conjugated Bilirubin"),
            "CMP"),
    LabTest("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
            ("Alkaline Phosphatase", "ALP", "Alk Phos", "Alk Phosphatase"), "CMP"),
    LabTest("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
            ("ALT", "ALT (SGPT)", "SGPT", "Alanine Aminotransferase", "Alanine Transaminase"), "CMP"),
    LabTest("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
            ("AST", "AST (SGOT)", "SGOT", "Aspartate Aminotransferase", "Aspartate Transaminase"), "CMP"),
    LabTest("2324-2", "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
            ("GGT", "Gamma GT", "Gamma Glutamyl Transferase", "GGTP"), "CMP"),
    LabTest("3084-1", "Urate [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Uric Acid", "Urate"), "CHEM"),
    LabTest("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Magnesium", "Mg"), "CHEM"),
    LabTest("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Phosphorus", "Phosphate", "Inorganic Phosphorus"), "CHEM"),
    # --- Lipid panel ---
    LabTest("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Total Cholesterol", "Cholesterol Total", "Cholesterol, Total", "Cholesterol"),
            "LIPID"),
    LabTest("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Triglycerides", "Triglyceride", "TG", "Trig"), "LIPID"),
    LabTest("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL",
            ("HDL Cholesterol", "HDL", "HDL-C", "Cholesterol HDL", "HDL Chol"), "LIPID"),
    LabTest("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL",
            ("LDL Cholesterol", "LDL", "LDL-C", "LDL Cholesterol Calc", "LDL Cholesterol (calc)",
             "LDL Chol Calc", "Cholesterol LDL"), "LIPID"),
    LabTest("2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma", "mg/dL",
            ("LDL Cholesterol Direct", "LDL Cholesterol, Direct", "Direct LDL"), "LIPID"),
    LabTest("43396-1", "Cholesterol non HDL [Mass/volume] in Serum or Plasma", "mg/dL",
            ("Non-HDL Cholesterol", "Non HDL Cholesterol", "Non-HDL-C"), "LIPID"),
    LabTest("13458-5", "Cholesterol in VLDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL",
            ("VLDL Cholesterol", "VLDL", "VLDL Cholesterol (calc)"), "LIPID"),
    # --- Diabetes ---
    LabTest("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%",
            ("HbA1c", "Hemoglobin A1c", "Haemoglobin A1c", "A1c", "Glycated Hemoglobin",
             "Glycohemoglobin", "Hgb A1c"), "DIABETES"),
    # --- Thyroid ---
    LabTest("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L",
            ("TSH", "Thyroid Stimulating Hormone", "Thyrotropin"), "THYROID", ("u[IU]/mL",)),
    LabTest("3024-7", "Thyroxine (T4) free [Mass/volume] in Serum or Plasma", "ng/dL",
            ("Free T4", "FT4", "T4 Free", "Thyroxine Free", "Free Thyroxine"), "THYROID"),
    LabTest("3051-0", "Triiodothyronine (T3) free [Mass/volume] in Serum or Plasma", "pg/mL",
            ("Free T3", "FT3", "T3 Free", "Free Triiodothyronine"), "THYROID"),
    # --- Vitamins, iron, inflammation ---
    LabTest("62292-8", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma",
            "ng/mL",
            ("Vitamin D", "Vitamin D 25-Hydroxy", "Vitamin D, 25-Hydroxy", "25-OH Vitamin D",
             "25-Hydroxyvitamin D", "Vit D 25-OH", "25(OH)D"), "VITAMINS"),
    LabTest("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "pg/mL",
            ("Vitamin B12", "B12", "Cobalamin", "Vit B12"), "VITAMINS"),
    LabTest("2284-8", "Folate [Mass/volume] in Serum or Plasma", "ng/mL",
            ("Folate", "Folic Acid", "Serum Folate"), "VITAMINS"),
    LabTest("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "ng/mL",
            ("Ferritin", "Serum Ferritin"), "IRON", ("ug/L",)),
    LabTest("2498-4", "Iron [Mass/volume] in Serum or Plasma", "ug/dL",
            ("Iron", "Serum Iron", "Iron, Total"), "IRON"),
    LabTest("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L",
            ("CRP", "C-Reactive Protein", "C Reactive Protein"), "INFLAMMATION", ("mg/dL",)),
    LabTest("2857-1", "Prostate specific Ag [Mass/volume] in Serum or Plasma", "ng/mL",
            ("PSA", "Prostate Specific Antigen", "PSA Total"), "TUMOUR", ("ug/L",)),
)

# Printed unit spellings (compared case-insensitively, spaces removed) -> UCUM code.
PRINTED_UNITS: dict[str, str] = {
    "mg/dl": "mg/dL", "g/dl": "g/dL", "g/l": "g/L", "mg/l": "mg/L", "ug/dl": "ug/dL",
    "µg/dl": "ug/dL", "mcg/dl": "ug/dL", "ug/l": "ug/L", "µg/l": "ug/L", "ng/ml": "ng/mL",
    "ng/dl": "ng/dL", "pg/ml": "pg/mL", "mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L",
    "nmol/l": "nmol/L", "pmol/l": "pmol/L", "meq/l": "meq/L", "u/l": "U/L", "iu/l": "U/L",
    "%": "%", "fl": "fL", "pg": "pg", "l/l": "L/L",
    "miu/l": "m[IU]/L", "µiu/ml": "u[IU]/mL", "uiu/ml": "u[IU]/mL", "μiu/ml": "u[IU]/mL",
    "x10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "10*3/ul": "10*3/uL",
    "k/ul": "10*3/uL", "thou/ul": "10*3/uL", "x10^3/µl": "10*3/uL", "10^3/µl": "10*3/uL",
    "x10^6/ul": "10*6/uL", "x10e6/ul": "10*6/uL", "10^6/ul": "10*6/uL", "10*6/ul": "10*6/uL",
    "m/ul": "10*6/uL", "mil/ul": "10*6/uL", "x10^6/µl": "10*6/uL", "10^6/µl": "10*6/uL",
    "x10^9/l": "10*9/L", "10^9/l": "10*9/L", "10*9/l": "10*9/L",
    "x10^12/l": "10*12/L", "10^12/l": "10*12/L", "10*12/l": "10*12/L",
    "ml/min/1.73m2": "mL/min/{1.73_m2}", "ml/min/1.73m²": "mL/min/{1.73_m2}",
    "ml/min/{1.73_m2}": "mL/min/{1.73_m2}",
}
# fmt: on


def normalise_name(text: str) -> str:
    """Fold a printed test name for lookup: NFKD, case-folded, punctuation to spaces, one space."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    folded = folded.replace("%", " pct ").replace("#", " abs ")
    return " ".join(re.sub(r"[^0-9a-z]+", " ", folded).split())


def _index() -> dict[str, LabTest]:
    index: dict[str, LabTest] = {}
    for test in CATALOGUE:
        for name in test.names:
            key = normalise_name(name)
            if key in index and index[key] is not test:
                raise ValueError(f"lab name {name!r} is claimed by {index[key].code} and {test.code}")
            index[key] = test
    return index


BY_NAME: dict[str, LabTest] = _index()
BY_CODE: dict[str, LabTest] = {test.code: test for test in CATALOGUE}


def find_test(printed_name: str) -> LabTest | None:
    """The catalogue entry whose name or synonym matches ``printed_name`` exactly (after folding)."""
    return BY_NAME.get(normalise_name(printed_name))


def ucum_unit(printed_unit: str) -> str | None:
    """The UCUM code for a unit as printed on a report, or None when the spelling is unknown."""
    key = "".join(printed_unit.split()).casefold()
    return PRINTED_UNITS.get(key)
