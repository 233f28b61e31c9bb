package state

// RFMSegments are the standard named RFM segments, written in the rule
// language on the 1-5 scores. They are exclusive: where the usual score
// ranges overlap, the segment listed first wins, through !segment(...).
func RFMSegments() []SegmentConfig {
	return []SegmentConfig{
		{"champions", `rfm.r >= 4 && rfm.f >= 4 && rfm.m >= 4`},
		{"cant_lose_them", `rfm.r <= 1 && rfm.f >= 4 && rfm.m >= 4`},
		{"loyal", `rfm.r >= 2 && rfm.f >= 3 && rfm.m >= 3 && !segment("champions")`},
		{"at_risk", `rfm.r <= 2 && rfm.f >= 2 && rfm.m >= 2 && !segment("cant_lose_them") && !segment("loyal")`},
		{"new_customers", `rfm.r >= 4 && rfm.f <= 1`},
		{"potential_loyalist", `rfm.r >= 3 && rfm.f <= 3 && rfm.m <= 3 && !segment("new_customers") && !segment("loyal") && !segment("champions")`},
		{"promising", `rfm.r >= 3 && rfm.f <= 1 && !segment("new_customers") && !segment("potential_loyalist")`},
		{"need_attention", `rfm.r >= 2 && rfm.r <= 3 && rfm.f >= 2 && rfm.f <= 3 && !segment("loyal") && !segment("potential_loyalist") && !segment("at_risk")`},
		{"about_to_sleep", `rfm.r >= 2 && rfm.r <= 3 && rfm.f <= 2 && !segment("potential_loyalist") && !segment("need_attention") && !segment("at_risk") && !segment("promising")`},
		{"lost", `rfm.r <= 1 && rfm.f <= 2 && rfm.m <= 2 && !segment("at_risk")`},
		{"hibernating", `rfm.r <= 2 && !segment("lost") && !segment("at_risk") && !segment("cant_lose_them") && !segment("loyal") && !segment("about_to_sleep") && !segment("need_attention")`},
	}
}
