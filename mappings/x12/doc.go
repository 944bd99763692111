// Package x12 owns ANSI X12 EDI for Conveyor: reading interchanges into the
// plain values expressions use (map[string]any, []any, string, int,
// float64), writing interchanges from such values, and 997 functional
// acknowledgements. It uses the standard library only.
//
// # Reading
//
// Parse (or ParseBytes) reads one interchange. The separators come from the
// fixed-width ISA segment (106 characters): the element separator is its
// fourth character, the repetition separator ISA11 (when it is not a
// standards identifier such as "U"), the component separator ISA16 and the
// segment terminator the character after ISA16. Line breaks and blanks
// between segments are ignored. Envelopes ISA/GS/ST..SE/GE/IEA are checked:
// ISA13 = IEA02, GS06 = GE02, ST02 = SE02, SE01 = segments from ST to SE,
// GE01 = transaction sets, IEA01 = groups. Errors are *Error and locate the
// problem for an analyst:
//
//	segment 14 (SE) at byte 812: SE01 says 12 segments, the transaction has 13 (ST to SE)
//
// NewReader reads transaction by transaction, holding one transaction in
// memory, for files of hundreds of megabytes and for files holding several
// interchanges; Validate checks a whole stream in constant memory.
//
// # The JSON view
//
// (*Interchange).JSON gives the interchange, (*Transaction).View the same
// shape holding one transaction:
//
//	{
//	  "isa": {"auth_qualifier": "00", "auth": "", "security_qualifier": "00", "security": "",
//	          "sender_qualifier": "ZZ", "sender": "NORTHWIND", "receiver_qualifier": "ZZ",
//	          "receiver": "ACMESUPPLY", "date": "240116", "time": "0930", "standards_id": "U",
//	          "version": "00401", "control": "000000905", "ack_requested": "0", "usage": "P"},
//	  "separators": {"element": "*", "component": ">", "segment": "~"},  // and "repetition" when there is one
//	  "groups": [{
//	    "gs": {"functional_id": "PO", "sender": "NORTHWIND", "receiver": "ACMESUPPLY", "date": "20240116",
//	           "time": "0930", "control": "905", "agency": "X", "version": "004010"},
//	    "transactions": [{
//	      "set": "850", "control": "0001",
//	      "segments": [
//	        {"id": "BEG", "elements": ["00", "SA", "4500012345", "", "20240115"]},
//	        {"loop": "N1", "segments": [{"id": "N1", "elements": ["ST", "NORTHWIND STORE 0042", "92", "0042"]}, ...]},
//	        {"loop": "PO1", "segments": [...]},
//	        ...],
//	      "purchase_order": {...}
//	    }]
//	  }]
//	}
//
// "segments" holds every segment between ST and SE, nested by loop: a loop
// is {"loop": "N1", "segments": [...]}, its first segment the one starting
// it. Each transaction set has a small loop table (850, 856, 810; other sets
// stay flat); a segment no open loop knows stays where it is. In an 856 the
// HL loops nest under the HL their HL02 names. An element is text; a
// composite is a list of components (["BX", "12"]), repetitions are
// {"repeats": [...]}. ISA fields padded to their width are trimmed.
//
// For 850, 856 and 810 the transaction also holds a friendly form. Empty
// elements are left out. Quantities and counts are numbers (int, or float64
// when exact, e.g. 2.5); prices, weights and amounts stay text, exactly as
// sent ("9.95"); amounts X12 sends with two implied decimals (TDS01, SAC05,
// ITD08) are shown as decimal text: TDS*46680 is "total": "466.80".
//
//	"purchase_order": {                              // 850
//	  "beg": {"purpose": "00", "type": "SA", "po_number": "4500012345", "release": ..., "date": "20240115", "contract": ...},
//	  "currency": "USD", "refs": [{"qualifier": "DP", "value": "038", "description": ...}],
//	  "contacts": [{"function": "BD", "name": "JANE BUYER", "phone": ..., "email": ..., "fax": ...}],
//	  "fob": {"payment": "PP", ...}, "charges": [SAC], "terms": {ITD}, "dates": [{"qualifier": "002", "date": "20240125", "time": ...}],
//	  "carrier": {"routing_sequence": ..., "id_qualifier": "2", "id": "UPSN", "method": "M", "routing": "UPS GROUND", ...},
//	  "parties": [{"code": "ST", "name": ..., "id_qualifier": "92", "id": "0042", "name2": ..., "address": ["1200 LAKE SHORE DR", "SUITE 400"],
//	               "city": ..., "state": ..., "postal_code": ..., "country": ..., "refs": [...], "contacts": [...]}],
//	  "lines": [{"line": "1", "qty": 24, "uom": "EA", "price": "9.95", "price_basis": "PE",
//	             "upc": "012345678905", "vendor_part": "WID-100-BL", "buyer_part": "NW-88812",
//	             "description": "WIDGET, BLUE, 100MM", "pack": {"units": 12, "size": 1, "uom": "EA"},
//	             "refs": [...], "contacts": [...], "charges": [...], "dates": [...], "taxes": [...], "parties": [...]}],
//	  "ctt": {"lines": 3, "hash_total": "32.5"}
//	}
//	"ship_notice": {                                 // 856
//	  "bsn": {"purpose": "00", "shipment_id": "SHP-77120", "date": "20240117", "time": "1415", "structure": "0001"},
//	  "dates": [...],
//	  "shipment": {                                  // the HL level S; each level holds its children by level:
//	    "packaging": {"packaging": "CTN25", "lading_qty": 3, "weight_qualifier": "G", "weight": "41.5", "weight_uom": "LB", ...},
//	    "carrier": {TD5}, "equipment": {"code": ..., "initial": ..., "number": ...}, "refs": [...], "dates": [...], "parties": [...],
//	    "orders": [{"po_number": "4500012345", "po_date": "20240115", ...,      // O
//	      "packs": [{"sscc": "00012345670000000017", "marks": [{"qualifier": ..., "number": ...}],  // P (MAN GM is "sscc")
//	        "items": [{"line": "1", "upc": ..., "vendor_part": ..., "qty": 24, "uom": "EA",   // I (LIN, SN1, PID)
//	                   "ordered_qty": 24, "ordered_uom": "EA", "status": ..., "description": ...}]}]}]
//	  },
//	  "ctt": {"lines": 7}
//	}
//	"invoice": {                                     // 810
//	  "big": {"date": "20240118", "invoice_number": "INV-1001", "po_date": ..., "po_number": ..., "release": ..., "change": ..., "type": ...},
//	  "notes": [{"code": ..., "text": ...}], "currency", "refs", "contacts", "parties", "terms", "dates", "fob" as in the 850,
//	  "lines": [{"line", "qty", "uom", "price", "price_basis", product ids, "description", "pack", "refs", "dates", "charges", "taxes", "parties"}],
//	  "total": "466.80", "taxes": [{"type": "ST", "amount": "0", "percent": ...}],
//	  "carrier": {"method": "M", "scac": "UPSN", "routing": ...}, "charges": [{"indicator": "C", "code": "D240", "amount": "12.50", "description": "FREIGHT", ...}],
//	  "shipment_summary": {"units": 30.5, "uom": "EA", "weight": "41.5", "weight_uom": "LB"},
//	  "ctt": {"lines": 3}
//	}
//
// Product ids (PO1, IT1, LIN pairs) are named by qualifier: BP buyer_part,
// VP vendor_part, UP upc, UK gtin, EN ean, SK sku, IN buyer_item, VN
// vendor_item, MG manufacturer_part, VA vendor_style, CB buyer_catalog, VC
// vendor_catalog; any other as "id_" + qualifier. Contact numbers (PER) are
// phone (TE), email (EM), fax (FX) or "comm_" + qualifier. An 856 whose
// top level is not a single shipment holds its top levels by level, like
// children: "orders", "packs", "items", "tares", "shipments", or "hl_" +
// the HL03 code.
//
// # Writing
//
// Build writes an interchange from the JSON view, from {"transactions":
// [...]} or from one transaction such as {"ship_notice": {...}}, with the
// friendly form or "segments". It numbers HL segments, counts SE01, GE01 and
// IEA01, pads the ISA, takes control numbers from BuildOptions (or a
// counter), refuses data holding a separator and reports unknown keys, so a
// misspelt field is an error rather than a missing element. Where the
// friendly form leaves them out Build writes: BEG purpose "00" and type
// "SA", BSN purpose "00" and structure "0001", today's date (and time) in
// BEG, BSN and BIG, CTT with the number of PO1, HL or IT1 segments (and the
// sum of whole PO1 quantities), and the 810 total TDS01 as the sum of
// quantity × price plus charges less allowances.
//
// Ack997 answers an interchange with a 997 (AK1, AK2, AK3/AK4, AK5, AK9).
package x12
