"""A fixed vocabulary for generated tasks (titles, descriptions, tags). Order matters: earlier words
are drawn more often (Zipf-like), so search keywords range from common to rare."""

WORDS = """
call email review update send buy check book pay plan write fix clean prepare schedule
meeting report invoice project client team budget doctor dentist groceries milk bread
coffee birthday gift flight hotel car insurance taxes rent bank renew passport visa
presentation slides draft proposal contract design feedback deploy release test bug
server database backup migrate refactor document onboarding interview hire payroll
garden laundry dishes vacuum trash recycle plants water repair bike tires oil change
kids school homework soccer practice piano lesson pickup dropoff library return order
pizza dinner lunch breakfast recipe cook bake cake party invite guests wedding anniversary
mom dad sister brother grandma friend neighbor landlord plumber electrician contractor
weekly monthly quarterly annual summary metrics dashboard roadmap sprint retro standup
workshop conference ticket register subscription cancel renewal warranty receipt refund
package shipping delivery tracking store pharmacy prescription vitamins gym workout run
yoga swim hike walk dog vet cat food litter grooming appointment haircut shoes jacket
paint fence roof gutter window door lock keys garage basement attic closet shelves
camera phone laptop charger printer ink router password account security update backup
photos album frame print wall calendar agenda minutes notes outline research article
blog newsletter podcast video edit upload publish share social marketing campaign launch
sales lead prospect demo pricing quote estimate vendor supplier inventory warehouse stock
audit compliance policy legal review signature notary certificate license permit filing
volunteer donation charity fundraiser church community council vote election petition
""".split()
WORDS = list(dict.fromkeys(WORDS))

TAGS = """work home personal errands health finance family urgent someday shopping travel
reading learning admin fitness kids garden car house pets social""".split()
